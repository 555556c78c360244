/*
 * policy_internal.h - what policy.c (the rule store and the matcher) and
 * policy_parse.c (one line of text to one rule) share, and what the tests
 * and the fuzzer reach behind the opaque tw_policy.
 */
#ifndef TW_POLICY_INTERNAL_H
#define TW_POLICY_INTERNAL_H

#include "tw_internal.h"

/* Hard limits: every one of them is an error, never a truncation. */
#define TW__POLICY_MAX_FIELDS 16          /* FIELD=VALUE per line */
#define TW__POLICY_MAX_LINE 4096          /* bytes per line, without "\r\n" */
#define TW__POLICY_MAX_ROLE 32            /* bytes in a role name */
#define TW__POLICY_MAX_RULES 10000        /* rules per policy */
#define TW__POLICY_MAX_FILE (1024 * 1024) /* bytes per policy file */

enum tw__pfield {
    TW__PF_CN,
    TW__PF_O,
    TW__PF_OU,
    TW__PF_DNS,
    TW__PF_URI,
    TW__PF_EMAIL,
    TW__PF_IP,
    TW__PF_SHA256,
    TW__PF_SPKI
};

/* One FIELD=VALUE of a rule, checked and normalised. */
struct tw__pcond {
    enum tw__pfield field;
    char *value;           /* dns: lower case; email: domain in lower case;
                              ip: as inet_ntop prints it; sha256/spki: 64
                              lower-case hex digits; others as written */
    unsigned char ip[16];  /* ip= only: the address, 4 or 16 bytes */
    size_t iplen;
};

/* One line of a policy. */
struct tw__prule {
    char *role;            /* NULL for an expectation */
    size_t role_idx;       /* index into tw_policy.roles (set by policy.c) */
    char *text;            /* the normalised line: "read O=\"ABC Inc.\"" */
    char *where;           /* "FILE:LINE" for a rule of a file, else NULL */
    size_t nconds;
    struct tw__pcond conds[]; /* nconds of them, all must match */
};

struct tw_policy {
    struct tw__prule **rules;
    size_t nrules, cap;
    /* Each distinct role once, in order of first appearance; the strings
     * belong to the first rule that has the role. */
    const char **roles;
    size_t nroles;
};

/*
 * Parse one line (`len` bytes, no newline) into *out.  `want_role` is 1 for
 * a rule (ROLE FIELD=VALUE...) and 0 for an expectation (FIELD=VALUE...).
 * `where` starts every error message ("policy.txt:12", "rule \"read x\"").
 * Returns 1 with a rule, 0 when the line is blank or only a comment, -1 with
 * TW_ERR_INPUT (or TW_ERR_INTERNAL: out of memory) in `err`.
 */
int tw__policy_parse_line(const char *line, size_t len, int want_role,
                          const char *where, struct tw__prule **out,
                          tw_err *err);
void tw__prule_free(struct tw__prule *rule);

/* The canonical spelling of a field name ("CN", "dns", ...). */
const char *tw__policy_field_name(enum tw__pfield field);

/*
 * Add every rule of a policy file held in memory (`len` bytes, NULs and all).
 * `name` names it in errors ("NAME:LINE: ...").  All or nothing: on error
 * the policy is left as it was.  tw_policy_load_file reads the file and
 * calls this; the fuzzer calls it directly.
 */
int tw__policy_load_buffer(tw_policy *p, const char *name, const char *data,
                           size_t len, tw_err *err);

#endif /* TW_POLICY_INTERNAL_H */
