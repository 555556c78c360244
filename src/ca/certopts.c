/*
 * certopts.c - what issue and sign share: their options (the CA, where to
 * write, purposes, validity, names) and the template made from them.
 */
#include "ca.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

int ca_certopts_parse(ca_certopts *o, const ca_certcmd *cmd, int argc,
                      char **argv)
{
    int c, n = 0, days_given = 0;

    memset(o, 0, sizeof(*o));
    o->keytype = "ec-p256";
    o->days = 365;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", cmd->opts, NULL)) != -1) {
        switch (c) {
        case 'c': o->ca = optarg; break;
        case 'o': o->out = optarg; break;
        case 's': o->subject = optarg; break;
        case 'k': o->keytype = optarg; break;
        case 'r': o->csr = optarg; break;
        case 'S': o->purposes |= TW_PURPOSE_SERVER; break;
        case 'C': o->purposes |= TW_PURPOSE_CLIENT; break;
        case 'D': n = ca_names_add(&o->names, TW_SAN_DNS, optarg); break;
        case 'I': n = ca_names_add(&o->names, TW_SAN_IP, optarg); break;
        case 'U': n = ca_names_add(&o->names, TW_SAN_URI, optarg); break;
        case 'E': n = ca_names_add(&o->names, TW_SAN_EMAIL, optarg); break;
        case 'p': o->passfile = optarg; break;
        case 'f': o->force = 1; break;
        case 'd':
            if ((o->days = ca_parse_days(cmd->name, optarg, 36500)) < 0)
                return CA_EXIT_USAGE;
            days_given = 1;
            break;
        case 'L':
            if ((o->lifetime = ca_parse_duration(cmd->name, "--lifetime",
                                                 optarg, CA_LIFETIME_MIN,
                                                 CA_LIFETIME_MAX)) < 0)
                return CA_EXIT_USAGE;
            break;
        case 'h': return ca_help(cmd->usage), -1;
        default: return ca_bad_option(cmd->name, c, argv);
        }
        if (n < 0) {
            ca_fail(cmd->name, "more than %d names given", CA_NAMES_MAX);
            return CA_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        ca_fail(cmd->name, "unexpected argument '%s' (see `twoway-ca %s "
                "--help`)", argv[optind], cmd->name);
        return CA_EXIT_USAGE;
    }
    /* A table has --subject (issue) or --csr (sign), never both. */
    if (o->ca == NULL || o->out == NULL ||
        (o->subject == NULL && o->csr == NULL)) {
        ca_fail(cmd->name, "%s", cmd->needs);
        return CA_EXIT_USAGE;
    }
    if (days_given && o->lifetime > 0) {
        ca_fail(cmd->name, "give --days or --lifetime, not both");
        return CA_EXIT_USAGE;
    }
    if (o->purposes == 0) {
        ca_fail(cmd->name, "say what the certificate is for: --server, "
                "--client, or both");
        return CA_EXIT_USAGE;
    }
    return CA_EXIT_OK;
}

tw_certgen *ca_certopts_template(const ca_certopts *o, const char *cmd,
                                 int *rc)
{
    tw_name *name = NULL;
    tw_certgen *g = NULL;
    size_t named;
    tw_err err;

    *rc = CA_EXIT_USAGE;
    if (o->subject != NULL && (name = tw_name_parse(o->subject, &err)) == NULL) {
        ca_fail(cmd, "--subject: %s", err.msg);
        return NULL;
    }
    if ((g = tw_certgen_new(&err)) == NULL ||
        (name != NULL && tw_certgen_set_subject(g, name, &err) < 0) ||
        tw_certgen_set_purposes(g, o->purposes, &err) < 0 ||
        tw_certgen_set_days(g, o->days, &err) < 0 ||
        (o->lifetime > 0 &&
         tw_certgen_set_lifetime(g, o->lifetime, &err) < 0))
        goto fail;
    /* The CSR's subject and names first: the CN becomes a DNS name only
     * when there is no name at all. */
    if (o->csr != NULL && tw_certgen_from_csr_file(g, o->csr, &err) < 0) {
        ca_fail(cmd, "--csr: %s", err.msg);
        *rc = CA_EXIT_FAIL;
        goto done;
    }
    named = tw_certgen_san_count(g) + o->names.count;
    if (ca_names_apply(&o->names, g, o->purposes, &err) < 0)
        goto fail;
    /* A server certificate without a name gets its CN as a DNS name, as
     * issue documents; sign says so, since the name came from nobody's
     * --dns and the CSR carried none. */
    if (o->csr != NULL && named == 0 && tw_certgen_san_count(g) > 0)
        fprintf(stderr, "twoway-ca %s: note: neither the CSR nor --dns, "
                "--ip, --uri or --email names the server: the certificate "
                "gets its CN as its DNS name (give --dns NAME to choose)\n",
                cmd);
    tw_name_free(name);
    return g;
fail:
    *rc = ca_fail_err(cmd, &err);
done:
    tw_certgen_free(g);
    tw_name_free(name);
    return NULL;
}
