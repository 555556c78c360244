/*
 * names.c - the --dns/--ip/--uri/--email options that issue and sign share.
 */
#include "ca.h"

#include <string.h>

int ca_names_add(ca_names *n, enum tw_san_type type, const char *value)
{
    if (n->count == CA_NAMES_MAX)
        return -1;
    n->type[n->count] = type;
    n->value[n->count] = value;
    n->count++;
    return 0;
}

int ca_names_apply(const ca_names *n, tw_certgen *g, int purposes, tw_err *err)
{
    for (size_t i = 0; i < n->count; i++)
        if (tw_certgen_add_san(g, n->type[i], n->value[i], err) < 0)
            return -1;
    if ((purposes & TW_PURPOSE_SERVER) && tw_certgen_add_cn_as_dns(g, err) < 0)
        return -1;
    return 0;
}
