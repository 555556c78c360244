/*
 * renew_pair.c - a key and its certificate replaced so that a crash at any
 * moment leaves a matching pair.
 *
 * Two files cannot be renamed at once.  Both new files are first written
 * whole (KEY.next 0600, CERT.next, each fsynced), then KEY.next becomes KEY
 * and CERT.next becomes CERT, each rename made durable.  Whatever moment a
 * crash hits, one of these holds on disk:
 *   - KEY and CERT are the old pair (nothing renamed yet);
 *   - KEY is new and CERT.next is its certificate (between the renames);
 *   - KEY and CERT are the new pair.
 * tw__pair_recover, run at every start, finishes the second case and
 * removes what an unfinished first case left.
 */
#include "renew_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

char *tw__pair_next(const char *path, tw_err *err)
{
    size_t len = strlen(path) + sizeof(".next");
    char *p = twu_malloc(len);

    if (p == NULL) {
        twu_err_nomem(err);
        return NULL;
    }
    snprintf(p, len, "%s.next", path);
    return p;
}

int tw__pair_write(const char *cert_file, const char *key_file,
                   const char *cert_pem, const char *key_pem, size_t key_len,
                   tw_err *err)
{
    char *key_next = tw__pair_next(key_file, err);
    char *cert_next = key_next ? tw__pair_next(cert_file, err) : NULL;
    int rc = -1;

    if (cert_next == NULL)
        goto done;
    if (twu_write_file_atomic(key_next, key_pem, key_len, 0600, 0, err) < 0 ||
        twu_write_file_atomic(cert_next, cert_pem, strlen(cert_pem), 0644, 0,
                              err) < 0) {
        unlink(key_next);
        unlink(cert_next);
        goto done;
    }
    if (twu_rename(key_next, key_file, err) < 0) {
        unlink(key_next);
        unlink(cert_next);
        goto done;
    }
    /* From here KEY is new: CERT.next stays until it is CERT, whatever
     * happens (recovery puts it in place). */
    if (twu_rename(cert_next, cert_file, err) < 0)
        goto done;
    rc = 0;
done:
    twu_free(key_next);
    twu_free(cert_next);
    return rc;
}

static int exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* Whether the certificate file and the (plain) key file belong together. */
static int matches(const char *cert_file, const char *key_file)
{
    tw_err err;
    tw_cert *cert = tw_cert_load_file(cert_file, &err);
    tw_key *key = cert ? tw_key_load_file(key_file, NULL, &err) : NULL;
    int ok = key != NULL && tw_cert_matches_key(cert, key);

    tw_key_free(key);
    tw_cert_free(cert);
    return ok;
}

int tw__pair_recover(const char *cert_file, const char *key_file, char *what,
                     size_t len, tw_err *err)
{
    char *key_next = tw__pair_next(key_file, err);
    char *cert_next = key_next ? tw__pair_next(cert_file, err) : NULL;
    int rc = -1;

    if (cert_next == NULL)
        goto done;
    rc = 0;
    if (exists(cert_next) && exists(key_next) && matches(cert_next, key_next)) {
        /* Both written, none renamed: the new pair is complete. */
        if (twu_rename(key_next, key_file, err) < 0 ||
            twu_rename(cert_next, cert_file, err) < 0) {
            rc = -1;
            goto done;
        }
        snprintf(what, len, "put in place the new key and certificate of a "
                 "renewal that stopped before its renames (%s, %s)",
                 key_file, cert_file);
        rc = 1;
    } else if (exists(cert_next) && !exists(key_next) &&
               matches(cert_next, key_file)) {
        /* Stopped between the renames: the key is new. */
        if (twu_rename(cert_next, cert_file, err) < 0) {
            rc = -1;
            goto done;
        }
        snprintf(what, len, "put in place the certificate of a renewal that "
                 "stopped between its renames (%s)", cert_file);
        rc = 1;
    } else if (exists(key_next) && !exists(cert_next) &&
               matches(cert_file, key_next)) {
        /* The renames reached the disk in the other order. */
        if (twu_rename(key_next, key_file, err) < 0) {
            rc = -1;
            goto done;
        }
        snprintf(what, len, "put in place the key of a renewal that stopped "
                 "between its renames (%s)", key_file);
        rc = 1;
    } else if (exists(cert_next) || exists(key_next)) {
        /* Written in part: the old pair is whole. */
        if ((exists(cert_next) && unlink(cert_next) != 0) ||
            (exists(key_next) && unlink(key_next) != 0)) {
            rc = twu_err(err, TW_ERR_IO, "cannot remove %s or %s: %s",
                         cert_next, key_next, strerror(errno));
            goto done;
        }
        snprintf(what, len, "removed what a renewal that stopped early had "
                 "written (%s, %s)", cert_next, key_next);
        rc = 1;
    }
done:
    twu_free(key_next);
    twu_free(cert_next);
    return rc;
}
