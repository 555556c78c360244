/*
 * serve_body.c - what serve reads from a request body, apart from the
 * server: the JSON object and its string members, the form of a token, and
 * whether a CSR asks for exactly what a token allows.  Untrusted input
 * all of it: tests/fuzz/fuzz_enroll.c feeds it arbitrary bytes.
 */
#include "serve.h"

#include <stdio.h>
#include <string.h>

json_t *serve_body_object(const char *body, size_t len, char *why, size_t n)
{
    json_error_t jerr;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);

    if (o == NULL || !json_is_object(o)) {
        snprintf(why, n, "the body is not a JSON object (%s)",
                 o == NULL ? jerr.text : "another JSON value");
        json_decref(o);
        return NULL;
    }
    return o;
}

int serve_body_string(json_t *o, const char *name, const char **out)
{
    json_t *v = json_object_get(o, name);

    *out = NULL;
    if (v == NULL)
        return 0;
    if (!json_is_string(v))
        return -1;
    *out = json_string_value(v);
    /* A string with a NUL inside is not what it seems to C: refuse it. */
    return strlen(*out) == json_string_length(v) ? 1 : -1;
}

/* A token as `twoway-ca token` prints it: 43 base64url characters. */
int serve_token_well_formed(const char *t)
{
    size_t n = strlen(t);

    if (n != CA_TOKEN_LEN)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= 'a' && t[i] <= 'z') ||
              (t[i] >= '0' && t[i] <= '9') || t[i] == '-' || t[i] == '_'))
            return 0;
    return 1;
}

static const char *const san_prefix[TW_SAN_TYPES] = {"DNS", "IP", "URI",
                                                      "email"};

/* Whether `id` holds exactly the names of `n` (any order).  When not,
 * `why` says the first difference. */
static int same_names(const tw_identity *id, const ca_names *n, char *why,
                      size_t len)
{
    size_t want[TW_SAN_TYPES] = {0};

    for (size_t i = 0; i < n->count; i++) {
        int found = 0;

        want[n->type[i]]++;
        for (size_t j = 0; j < tw_identity_san_count(id, n->type[i]); j++)
            found |= strcmp(tw_identity_san(id, n->type[i], j), n->value[i]) == 0;
        if (!found) {
            snprintf(why, len, "the CSR does not ask for %s:%s, which the "
                     "token is for", san_prefix[n->type[i]], n->value[i]);
            return 0;
        }
    }
    for (int t = 0; t < TW_SAN_TYPES; t++)
        for (size_t j = 0; j < tw_identity_san_count(id, t); j++) {
            int found = 0;

            for (size_t i = 0; i < n->count; i++)
                found |= n->type[i] == (enum tw_san_type)t &&
                         strcmp(tw_identity_san(id, t, j), n->value[i]) == 0;
            if (!found || tw_identity_san_count(id, t) != want[t]) {
                snprintf(why, len, "the CSR asks for %s:%s, which the token "
                         "does not allow", san_prefix[t],
                         tw_identity_san(id, t, j));
                return 0;
            }
        }
    return 1;
}

/* Whether the CSR asks for what the token is bound to: its subject, as the
 * `-subj` text of both parsed, and its names.  `why` says what differs. */
int serve_request_matches_token(const tw_identity *asked, const ca_token *t,
                                char *why, size_t len)
{
    tw_err err;
    tw_name *name = tw_name_parse(t->subject, &err);
    char *storage = NULL;
    ca_names names;
    int ok = 0;

    if (name == NULL) {
        snprintf(why, len, "the token's subject cannot be read: %s", err.msg);
        return 0;
    }
    if (strcmp(tw_name_text(name), tw_identity_subject(asked)) != 0)
        snprintf(why, len, "the CSR asks for the subject %s, but the token is "
                 "for %s", tw_identity_subject(asked), tw_name_text(name));
    else if (ca_names_from_sans(&names, t->sans, &storage) < 0)
        snprintf(why, len, "the token's names cannot be read");
    else
        ok = same_names(asked, &names, why, len);
    twu_free(storage);
    tw_name_free(name);
    return ok;
}


int serve_request_is_key_only(const tw_identity *asked)
{
    if (tw_identity_subject(asked)[0] != '\0')
        return 0;
    for (int t = 0; t < TW_SAN_TYPES; t++)
        if (tw_identity_san_count(asked, t) > 0)
            return 0;
    return 1;
}

int serve_apply_token(tw_certgen *g, const ca_token *t, tw_err *err)
{
    tw_name *name = tw_name_parse(t->subject, err);
    char *storage = NULL;
    ca_names names;
    int rc = -1;

    if (name == NULL || tw_certgen_set_subject(g, name, err) < 0)
        goto done;
    if (ca_names_from_sans(&names, t->sans, &storage) < 0) {
        twu_err(err, TW_ERR_INTERNAL, "the token's names cannot be read");
        goto done;
    }
    for (size_t i = 0; i < names.count; i++)
        if (tw_certgen_add_san(g, names.type[i], names.value[i], err) < 0)
            goto done;
    rc = 0;
done:
    twu_free(storage);
    tw_name_free(name);
    return rc;
}
