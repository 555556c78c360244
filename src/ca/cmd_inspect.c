/*
 * cmd_inspect.c - `twoway-ca inspect FILE`: what a certificate says, in the
 * fields policy rules match against.
 */
#include "ca.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>

static const char usage[] =
    "usage: twoway-ca inspect FILE [--json]\n"
    "\n"
    "Show a certificate (PEM or DER): version, serial, subject, issuer,\n"
    "validity, key, signature algorithm, purposes, names, SHA-256\n"
    "fingerprints of the certificate and of its public key (for sha256= and\n"
    "spki= policy rules) and SPIFFE ID.\n"
    "\n"
    "  --json     one JSON object instead of text\n"
    "  --help     show this help\n";

static const char *const san_prefix[TW_SAN_TYPES] = {"DNS", "IP", "URI",
                                                     "email"};

static const char *purposes_text(int p, char *buf, size_t len)
{
    snprintf(buf, len, "%s%s%s%s%s", (p & TW_PURPOSE_SERVER) ? "server" : "",
             (p & TW_PURPOSE_SERVER) && (p & ~TW_PURPOSE_SERVER) ? "," : "",
             (p & TW_PURPOSE_CLIENT) ? "client" : "",
             (p & TW_PURPOSE_CLIENT) && (p & TW_PURPOSE_CA) ? "," : "",
             (p & TW_PURPOSE_CA) ? "ca" : "");
    if (p == 0)
        snprintf(buf, len, "none");
    return buf;
}

static void print_json(const tw_identity *id)
{
    json_t *o = json_object(), *sans = json_array();
    char nb[32], na[32], p[32];

    ca_time_text(tw_identity_not_before(id), nb, sizeof(nb));
    ca_time_text(tw_identity_not_after(id), na, sizeof(na));
    for (int t = 0; t < TW_SAN_TYPES; t++)
        for (size_t i = 0; i < tw_identity_san_count(id, t); i++)
            json_array_append_new(
                sans, json_sprintf("%s:%s", san_prefix[t],
                                   tw_identity_san(id, t, i)));
    json_object_set_new(o, "version", json_integer(tw_identity_version(id)));
    json_object_set_new(o, "serial", json_string(tw_identity_serial(id)));
    json_object_set_new(o, "subject", json_string(tw_identity_subject(id)));
    json_object_set_new(o, "issuer", json_string(tw_identity_issuer(id)));
    json_object_set_new(o, "not_before", json_string(nb));
    json_object_set_new(o, "not_after", json_string(na));
    json_object_set_new(o, "key", json_string(tw_identity_key_type(id)));
    json_object_set_new(o, "signature_algorithm",
                        json_string(tw_identity_signature_algorithm(id)));
    json_object_set_new(o, "purposes",
                        json_string(purposes_text(tw_identity_purposes(id), p,
                                                  sizeof(p))));
    json_object_set_new(o, "sans", sans);
    json_object_set_new(o, "fingerprint_sha256",
                        json_string(tw_identity_fingerprint(id)));
    json_object_set_new(o, "spki_sha256", json_string(tw_identity_spki(id)));
    json_object_set_new(o, "spiffe_id",
                        tw_identity_spiffe_id(id)
                            ? json_string(tw_identity_spiffe_id(id))
                            : json_null());
    json_dumpf(o, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
    json_decref(o);
}

static void print_text(const tw_identity *id)
{
    char nb[32], na[32], p[32];
    int any = 0;

    ca_time_text(tw_identity_not_before(id), nb, sizeof(nb));
    ca_time_text(tw_identity_not_after(id), na, sizeof(na));
    printf("Version: %d\n", tw_identity_version(id));
    printf("Serial: %s\n", tw_identity_serial(id));
    printf("Subject: %s\n", tw_identity_subject(id));
    printf("Issuer: %s\n", tw_identity_issuer(id));
    printf("Not before: %s\n", nb);
    printf("Not after: %s\n", na);
    printf("Key: %s\n", tw_identity_key_type(id));
    printf("Signature algorithm: %s\n", tw_identity_signature_algorithm(id));
    printf("Purposes: %s\n",
           purposes_text(tw_identity_purposes(id), p, sizeof(p)));
    printf("Names:");
    for (int t = 0; t < TW_SAN_TYPES; t++)
        for (size_t i = 0; i < tw_identity_san_count(id, t); i++, any = 1)
            printf("%s%s:%s", any ? ", " : " ", san_prefix[t],
                   tw_identity_san(id, t, i));
    printf("%s\n", any ? "" : " (none)");
    printf("SHA-256 fingerprint: %s\n", tw_identity_fingerprint(id));
    printf("SPKI SHA-256: %s\n", tw_identity_spki(id));
    if (tw_identity_spiffe_id(id) != NULL)
        printf("SPIFFE ID: %s\n", tw_identity_spiffe_id(id));
}

int cmd_inspect(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int as_json = 0, c;
    tw_cert *cert;
    tw_identity *id;
    tw_err err;

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'j': as_json = 1; break;
        case 'h': return ca_help(usage);
        default: return ca_bad_option("inspect", c, argv);
        }
    }
    if (optind != argc - 1) {
        ca_fail("inspect", "give one certificate file");
        return CA_EXIT_USAGE;
    }
    if ((cert = tw_cert_load_file(argv[optind], &err)) == NULL)
        return ca_fail_err("inspect", &err);
    id = tw_identity_from_cert(cert, &err);
    tw_cert_free(cert);
    if (id == NULL)
        return ca_fail_err("inspect", &err);
    if (as_json)
        print_json(id);
    else
        print_text(id);
    tw_identity_free(id);
    return CA_EXIT_OK;
}
