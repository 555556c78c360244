/*
 * renew_crl.c - the CRL fetched from twoway-ca serve (or any URL that
 * serves it) and kept in the CRL file.
 *
 * A fetched CRL is used only when one of the CA file's CAs signed it and
 * it is newer than the one kept (a higher CRL number, or the same number
 * issued later); one with a lower number is refused, so that an old CRL
 * replayed by someone in the middle cannot bring back a revoked
 * certificate.  The file is written atomically: a restart while the CA is
 * down still has the last good CRL.
 */
#include "renew_internal.h"

#include <string.h>

#define CRL_FILE_MAX TW__HTTP_MAX_BODY

void tw__crl_state_load(const tw_renewal_options *o, tw__crl_state *st)
{
    tw_err err;
    size_t len;
    char *data;
    tw_trust *trust;

    memset(st, 0, sizeof(*st));
    if ((data = twu_read_file(o->crl_file, CRL_FILE_MAX, &len, &err)) == NULL)
        return;
    if ((trust = tw_trust_load(o->ca_file, NULL, &err)) != NULL &&
        tw__trust_check_crl(trust, data, len, o->crl_file, &st->info, &err) == 0)
        st->have = 1;
    tw_trust_free(trust);
    twu_free(data);
}

/* Whether `got` replaces what is kept. */
static int newer(const tw__crl_state *st, const tw__crl_info *got)
{
    if (!st->have)
        return 1;
    if (got->number != st->info.number)
        return got->number > st->info.number;
    return got->this_update > st->info.this_update;
}

int tw__crl_fetch(const tw_renewal_options *o, const atomic_int *stop,
                  tw__crl_state *st, tw_err *err)
{
    tw__http http = {.ca_file = o->ca_file, .user_agent = o->user_agent,
                     .stop = stop};
    tw__http_reply reply = {0};
    tw_trust *trust = NULL;
    tw__crl_info got;
    char *url = tw__url_for(o->crl_url, "/v1/crl", 0, "--crl-url", err);
    int rc = -1;

    if (url == NULL ||
        tw__http_exchange(&http, url, NULL, st->have ? st->etag : NULL, &reply,
                          err) < 0)
        goto done;
    if (reply.status == 304) {
        rc = 0;
        goto done;
    }
    if (reply.status != 200) {
        twu_err(err, TW_ERR_PROTOCOL, "%s answered HTTP %ld, not a CRL", url,
                reply.status);
        goto done;
    }
    if ((trust = tw_trust_load(o->ca_file, NULL, err)) == NULL ||
        tw__trust_check_crl(trust, reply.body.data ? reply.body.data : "",
                            reply.body.len, url, &got, err) < 0)
        goto done;
    if (st->have && got.number < st->info.number) {
        twu_err(err, TW_ERR_INPUT, "%s gave CRL number %llu, lower than the "
                "%llu in %s: refusing to go back to an older CRL", url,
                (unsigned long long)got.number,
                (unsigned long long)st->info.number, o->crl_file);
        goto done;
    }
    /* The ETag is kept only once the CRL it names is: a failed write is
     * fetched whole again. */
    if (!newer(st, &got)) {
        snprintf(st->etag, sizeof(st->etag), "%s", reply.etag);
        rc = 0;
        goto done;
    }
    if (twu_write_file_atomic(o->crl_file, reply.body.data, reply.body.len,
                              0644, 0, err) < 0)
        goto done;
    snprintf(st->etag, sizeof(st->etag), "%s", reply.etag);
    st->info = got;
    st->have = 1;
    rc = 1;
done:
    tw_trust_free(trust);
    tw__http_reply_free(&reply);
    twu_free(url);
    return rc;
}
