/*
 * policy.c - authorization rules: which identities get which roles.
 *
 * A policy is a list of rules (policy_parse.c turns a line into one).  A
 * rule gives its role to an identity when every one of its fields matches
 * the identity's parsed fields (identity.c): CN/O/OU against the subject's
 * attributes, dns/uri/email/ip against the SANs of that type, sha256/spki
 * against the digests.  The subject is never matched as a string, so a CN
 * whose text is "O=MailServer" cannot pass for an O.  A field the identity
 * has no value for never matches.
 *
 * Choices the public header leaves open:
 *   - Every malformed line is TW_ERR_INPUT, whether it came from a file or
 *     from a string (--allow, --expect-server); the message starts with
 *     FILE:LINE or with the line itself (rule "read CM=x") and gives the
 *     column.  Out of memory is TW_ERR_INTERNAL, misuse TW_ERR_USAGE.
 *   - Adding is all or nothing: a file with one bad line adds no rule.
 *   - A rule needs at least one field: "read" alone, which would give the
 *     role to everyone, is an error.  An empty file is an empty policy.
 *   - tw_policy_allows with a NULL role matches any rule, with or without a
 *     role; a named role never matches an expectation.
 *   - tw_policy_roles writes whole role names only, stopping at the first
 *     that does not fit, and returns how many roles the identity has, even
 *     those that did not fit.
 *   - tw_policy_role lists the roles the rules give, so that a server can
 *     refuse a role none of its routes needs (a misspelt "raed" would give
 *     no one anything, silently); each rule of a file remembers its
 *     FILE:LINE for that sentence.
 * Matching only reads the policy, so threads may share one policy.
 */
#include "policy_internal.h"
#include "tls_internal.h" /* tw_policy_load_config reads a tw_config */

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#define NO_ROLE ((size_t)-1)

tw_policy *tw_policy_new(tw_err *err)
{
    tw_policy *p = twu_calloc(1, sizeof(*p));

    if (p == NULL)
        twu_err_nomem(err);
    return p;
}

/* Drop the rules and roles added since the policy held `nrules`/`nroles`. */
static void truncate_to(tw_policy *p, size_t nrules, size_t nroles)
{
    while (p->nrules > nrules)
        tw__prule_free(p->rules[--p->nrules]);
    p->nroles = nroles;
}

void tw_policy_free(tw_policy *p)
{
    if (p == NULL)
        return;
    truncate_to(p, 0, 0);
    twu_free(p->rules);
    twu_free(p->roles);
    twu_free(p);
}

size_t tw_policy_rule_count(const tw_policy *p)
{
    return p != NULL ? p->nrules : 0;
}

/* Append `rule` (taken over: freed on failure too); a rule of a file keeps
 * `where` ("FILE:LINE"). */
static int append(tw_policy *p, struct tw__prule *rule, const char *where,
                  int from_file, tw_err *err)
{
    if (p->nrules == TW__POLICY_MAX_RULES) {
        tw__prule_free(rule);
        return twu_err(err, TW_ERR_INPUT,
                       "%s: the policy already holds %d rules, the most it "
                       "may", where, TW__POLICY_MAX_RULES);
    }
    if (p->nrules == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        struct tw__prule **rules;
        const char **roles;

        if (cap > TW__POLICY_MAX_RULES)
            cap = TW__POLICY_MAX_RULES;
        /* roles never outnumber rules: grow both together. */
        if ((rules = twu_realloc(p->rules, cap * sizeof(*rules))) == NULL)
            goto nomem;
        p->rules = rules;
        if ((roles = twu_realloc(p->roles, cap * sizeof(*roles))) == NULL)
            goto nomem;
        p->roles = roles;
        p->cap = cap;
    }
    if (from_file && (rule->where = twu_strdup(where)) == NULL)
        goto nomem;
    rule->role_idx = NO_ROLE;
    if (rule->role != NULL) {
        for (rule->role_idx = 0; rule->role_idx < p->nroles; rule->role_idx++)
            if (strcmp(p->roles[rule->role_idx], rule->role) == 0)
                break;
        if (rule->role_idx == p->nroles)
            p->roles[p->nroles++] = rule->role;
    }
    p->rules[p->nrules++] = rule;
    return 0;
nomem:
    tw__prule_free(rule);
    return twu_err_nomem(err);
}

/* `kind "line"` for messages about a line given as a string: cut short and
 * with control characters shown as '?', so the message stays one line. */
static void describe(char *out, size_t len, const char *kind, const char *line)
{
    char shown[64];
    size_t n = 0;

    for (; line[n] != '\0' && n < sizeof(shown) - 1; n++)
        shown[n] = ((unsigned char)line[n] < 0x20 || line[n] == 0x7f)
                       ? '?' : line[n];
    shown[n] = '\0';
    snprintf(out, len, "%s \"%s%s\"", kind, shown,
             line[n] != '\0' ? "..." : "");
}

static int add_line(tw_policy *p, const char *line, int want_role,
                    tw_err *err)
{
    const char *kind = want_role ? "rule" : "expectation";
    struct tw__prule *rule;
    char where[96];
    int rc;

    if (p == NULL || line == NULL)
        return twu_err(err, TW_ERR_USAGE, "no policy or no %s given", kind);
    describe(where, sizeof(where), kind, line);
    rc = tw__policy_parse_line(line, strlen(line), want_role, where, &rule,
                               err);
    if (rc < 0)
        return -1;
    if (rc == 0)
        return twu_err(err, TW_ERR_INPUT, "%s: the %s is empty: write %s, as "
                       "in '%s'", where, kind,
                       want_role ? "ROLE FIELD=VALUE" : "FIELD=VALUE",
                       want_role ? "read O=MailServer" : "O=InvoiceServer");
    return append(p, rule, where, 0, err);
}

int tw_policy_add_rule(tw_policy *p, const char *line, tw_err *err)
{
    return add_line(p, line, 1, err);
}

int tw_policy_add_expectation(tw_policy *p, const char *line, tw_err *err)
{
    return add_line(p, line, 0, err);
}

int tw__policy_load_buffer(tw_policy *p, const char *name, const char *data,
                           size_t len, tw_err *err)
{
    size_t old_rules, old_roles, pos = 0, lineno = 0;

    if (p == NULL || name == NULL || (data == NULL && len > 0))
        return twu_err(err, TW_ERR_USAGE, "no policy or no policy text given");
    if (len > TW__POLICY_MAX_FILE)
        return twu_err(err, TW_ERR_INPUT, "%s is larger than %d bytes: is it "
                       "the right file?", name, TW__POLICY_MAX_FILE);
    old_rules = p->nrules;
    old_roles = p->nroles;
    /* A UTF-8 byte order mark, as some editors write, is not a role. */
    if (len >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0)
        pos = 3;
    while (pos < len) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t end = nl != NULL ? (size_t)(nl - data) : len, n = end - pos;
        struct tw__prule *rule;
        char where[512];
        int rc;

        lineno++;
        if (n > 0 && data[end - 1] == '\r')
            n--; /* CRLF line ends */
        snprintf(where, sizeof(where), "%s:%zu", name, lineno);
        rc = tw__policy_parse_line(data + pos, n, 1, where, &rule, err);
        if (rc < 0 || (rc > 0 && append(p, rule, where, 1, err) < 0))
            goto err;
        pos = end + 1;
    }
    return 0;
err:
    truncate_to(p, old_rules, old_roles);
    return -1;
}

int tw_policy_load_file(tw_policy *p, const char *path, tw_err *err)
{
    size_t len;
    char *data;
    int rc;

    if (p == NULL || path == NULL)
        return twu_err(err, TW_ERR_USAGE, "no policy or no policy file given");
    if ((data = twu_read_file(path, TW__POLICY_MAX_FILE, &len, err)) == NULL)
        return -1;
    rc = tw__policy_load_buffer(p, path, data, len, err);
    twu_free(data);
    return rc;
}

int tw_policy_load_config(tw_policy *p, const tw_config *cfg, tw_err *err)
{
    size_t old_rules, old_roles;

    if (p == NULL || cfg == NULL)
        return twu_err(err, TW_ERR_USAGE, "no policy or no config given");
    old_rules = p->nrules;
    old_roles = p->nroles;
    /* In the order a generation adds them (gen.c): the file, then the
     * rules given one by one. */
    if (cfg->policy_file != NULL &&
        tw_policy_load_file(p, cfg->policy_file, err) < 0)
        return -1;
    for (size_t i = 0; i < cfg->nrules; i++)
        if (tw_policy_add_rule(p, cfg->rules[i], err) < 0)
            goto err;
    return 0;
err:
    truncate_to(p, old_rules, old_roles);
    return -1;
}

const char *tw_policy_role(const tw_policy *p, size_t index,
                           const char **rule, const char **where)
{
    if (rule != NULL)
        *rule = NULL;
    if (where != NULL)
        *where = NULL;
    if (p == NULL || index >= p->nroles)
        return NULL;
    /* The first rule with the role: the one that made it a role. */
    for (size_t i = 0; i < p->nrules; i++)
        if (p->rules[i]->role_idx == index) {
            if (rule != NULL)
                *rule = p->rules[i]->text;
            if (where != NULL)
                *where = p->rules[i]->where;
            break;
        }
    return p->roles[index];
}

/* ---------------------------------------------------------------- matching */

static char ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

/* ASCII case-insensitive equality, whatever the locale. */
static int eq_nocase(const char *a, const char *b)
{
    for (; *a != '\0' && ascii_lower(*a) == ascii_lower(*b); a++, b++)
        ;
    return *a == '\0' && *b == '\0';
}

/* A rule "*.example.com" matches "a.example.com" but neither
 * "a.b.example.com" nor "example.com" (RFC 6125 section 6.4.3: the wildcard
 * is the whole leftmost label and stands for exactly one).  A SAN that is
 * itself a wildcard only matches the same text. */
static int match_dns(const char *rule, const char *san)
{
    const char *dot;

    if (eq_nocase(rule, san))
        return 1;
    if (rule[0] != '*')
        return 0;
    if ((dot = strchr(san, '.')) == NULL || dot == san ||
        memchr(san, '*', (size_t)(dot - san)) != NULL)
        return 0;
    return eq_nocase(dot, rule + 1);
}

/* Segment by segment ('/'); a rule segment "*" stands for exactly one
 * non-empty segment, every other segment must be identical. */
static int match_uri(const char *rule, const char *uri)
{
    for (;;) {
        size_t rn = strcspn(rule, "/"), un = strcspn(uri, "/");

        if (rn == 1 && rule[0] == '*') {
            if (un == 0)
                return 0;
        } else if (rn != un || memcmp(rule, uri, rn) != 0) {
            return 0;
        }
        rule += rn;
        uri += un;
        if (*rule == '\0' || *uri == '\0')
            return *rule == *uri;
        rule++;
        uri++;
    }
}

/* The local part exactly (RFC 5321 section 2.4 lets it be case-sensitive),
 * the domain without regard to case. */
static int match_email(const char *rule, const char *san)
{
    const char *ra = strrchr(rule, '@'), *sa = strrchr(san, '@');

    if (ra == NULL || sa == NULL || ra - rule != sa - san ||
        memcmp(rule, san, (size_t)(ra - rule)) != 0)
        return 0;
    return eq_nocase(ra + 1, sa + 1);
}

static int match_ip(const struct tw__pcond *c, const char *san)
{
    unsigned char ip[16];

    if (c->iplen == 4)
        return inet_pton(AF_INET, san, ip) == 1 && memcmp(ip, c->ip, 4) == 0;
    return inet_pton(AF_INET6, san, ip) == 1 && memcmp(ip, c->ip, 16) == 0;
}

static int match_san(const struct tw__pcond *c, const tw_identity *id,
                     enum tw_san_type type)
{
    size_t n = tw_identity_san_count(id, type);

    for (size_t i = 0; i < n; i++) {
        const char *san = tw_identity_san(id, type, i);
        int hit = 0;

        switch (type) {
        case TW_SAN_DNS: hit = match_dns(c->value, san); break;
        case TW_SAN_URI: hit = match_uri(c->value, san); break;
        case TW_SAN_EMAIL: hit = match_email(c->value, san); break;
        case TW_SAN_IP: hit = match_ip(c, san); break;
        default: break;
        }
        if (hit)
            return 1;
    }
    return 0;
}

/* Any of the subject's values of attribute `attr`, exactly. */
static int match_attr(const struct tw__pcond *c, const tw_identity *id,
                      const char *attr)
{
    size_t n = tw_identity_field_count(id, attr);

    for (size_t i = 0; i < n; i++) {
        const char *v = tw_identity_field(id, attr, i);

        if (v != NULL && strcmp(v, c->value) == 0)
            return 1;
    }
    return 0;
}

static int match_cond(const struct tw__pcond *c, const tw_identity *id)
{
    switch (c->field) {
    case TW__PF_CN: return match_attr(c, id, "CN");
    case TW__PF_O: return match_attr(c, id, "O");
    case TW__PF_OU: return match_attr(c, id, "OU");
    case TW__PF_DNS: return match_san(c, id, TW_SAN_DNS);
    case TW__PF_URI: return match_san(c, id, TW_SAN_URI);
    case TW__PF_EMAIL: return match_san(c, id, TW_SAN_EMAIL);
    case TW__PF_IP: return match_san(c, id, TW_SAN_IP);
    case TW__PF_SHA256: return strcmp(c->value, tw_identity_fingerprint(id)) == 0;
    case TW__PF_SPKI: return strcmp(c->value, tw_identity_spki(id)) == 0;
    }
    return 0;
}

static int match_rule(const struct tw__prule *rule, const tw_identity *id)
{
    for (size_t i = 0; i < rule->nconds; i++)
        if (!match_cond(&rule->conds[i], id))
            return 0;
    return rule->nconds > 0;
}

int tw_policy_allows(const tw_policy *p, const tw_identity *id,
                     const char *role, const char **why)
{
    if (p == NULL || id == NULL)
        return 0;
    for (size_t i = 0; i < p->nrules; i++) {
        const struct tw__prule *rule = p->rules[i];

        if (role != NULL && (rule->role == NULL || strcmp(rule->role, role)))
            continue;
        if (match_rule(rule, id)) {
            if (why != NULL)
                *why = rule->text;
            return 1;
        }
    }
    return 0;
}

size_t tw_policy_roles(const tw_policy *p, const tw_identity *id, char *buf,
                       size_t len)
{
    /* Which roles were found already: one bit per distinct role, and there
     * are never more roles than the rule limit.  On the stack, so that
     * threads can share the policy. */
    unsigned char seen[(TW__POLICY_MAX_RULES + 7) / 8];
    size_t count = 0, used = 0;
    int full = 0;

    if (buf != NULL && len > 0)
        buf[0] = '\0';
    else
        full = 1;
    if (p == NULL || id == NULL)
        return 0;
    memset(seen, 0, sizeof(seen));
    for (size_t i = 0; i < p->nrules; i++) {
        const struct tw__prule *rule = p->rules[i];
        size_t k = rule->role_idx, n;

        if (rule->role == NULL || (seen[k / 8] & (1u << (k % 8))) ||
            !match_rule(rule, id))
            continue;
        seen[k / 8] |= (unsigned char)(1u << (k % 8));
        count++;
        /* Whole roles only, in order: a cut-off role name could read as
         * another role, and a later one in an earlier one's place. */
        n = strlen(rule->role);
        if (!full && used + (used > 0) + n < len) {
            if (used > 0)
                buf[used++] = ',';
            memcpy(buf + used, rule->role, n + 1);
            used += n;
        } else {
            full = 1;
        }
    }
    return count;
}
