/*
 * fileio.c - reading bounded files and writing files atomically.
 *
 * A key file must never be readable by others, even for an instant, and a
 * crash must never leave half a file behind: the data goes to a temporary
 * file made by mkstemp (mode 0600 from its creation), is fsync'ed, gets its
 * final mode, and is renamed (or linked, to refuse replacing) into place;
 * then the directory is fsync'ed so the new name survives power loss.
 */
#include "tw_internal.h"

#include <openssl/crypto.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *tw__read_file(const char *path, size_t max, size_t *len, tw_err *err)
{
    char *buf = NULL;
    size_t used = 0, cap = 0;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        tw__err(err, TW_ERR_IO, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    for (;;) {
        ssize_t n;

        if (used == cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            char *nbuf;

            if (cap >= max + 1) {
                tw__err(err, TW_ERR_INPUT,
                        "%s is larger than %zu bytes: is it the right file?",
                        path, max);
                goto err;
            }
            if (ncap > max + 1)
                ncap = max + 1;
            nbuf = tw__malloc(ncap + 1);
            if (nbuf == NULL) {
                tw__err_nomem(err);
                goto err;
            }
            if (buf != NULL) {
                memcpy(nbuf, buf, used);
                tw__free_secret(buf, cap);
            }
            buf = nbuf;
            cap = ncap;
        }
        n = read(fd, buf + used, cap - used);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            tw__err(err, TW_ERR_IO, "cannot read %s: %s", path,
                    strerror(errno));
            goto err;
        }
        if (n == 0)
            break;
        used += (size_t)n;
        if (used > max) {
            tw__err(err, TW_ERR_INPUT,
                    "%s is larger than %zu bytes: is it the right file?",
                    path, max);
            goto err;
        }
    }
    if (buf == NULL && (buf = tw__malloc(1)) == NULL) {
        tw__err_nomem(err);
        goto err;
    }
    buf[used] = '\0';
    close(fd);
    *len = used;
    return buf;
err:
    tw__free_secret(buf, cap);
    close(fd);
    return NULL;
}

char *tw__read_passphrase_file(const char *path, const char *option,
                               tw_err *err)
{
    tw_err rerr;
    size_t len;
    char *data = tw__read_file(path, TW__PASSPHRASE_MAX, &len, &rerr);
    char *pass;

    if (data == NULL) {
        tw__err(err, rerr.cls, "%s: %s", option, rerr.msg);
        return NULL;
    }
    data[strcspn(data, "\r\n")] = '\0';
    if (data[0] == '\0') {
        tw__err(err, TW_ERR_USAGE, "%s %s: the first line is empty", option,
                path);
        tw__free_secret(data, len);
        return NULL;
    }
    pass = tw__strdup(data);
    tw__free_secret(data, len);
    if (pass == NULL)
        tw__err_nomem(err);
    return pass;
}

void tw__free_passphrase(char *pass)
{
    if (pass != NULL)
        tw__free_secret(pass, strlen(pass));
}

void tw__free_secret(void *p, size_t len)
{
    if (p == NULL)
        return;
    OPENSSL_cleanse(p, len);
    tw__free(p);
}

char *tw__dirname(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        return tw__strdup(".");
    if (slash == path)
        return tw__strdup("/");
    return tw__strndup(path, (size_t)(slash - path));
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;

    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

void tw__stage_abort(tw__staged *s)
{
    if (s->tmp != NULL)
        unlink(s->tmp);
    tw__free(s->tmp);
    tw__free(s->dir);
    s->tmp = s->dir = NULL;
}

int tw__stage_file(tw__staged *s, const char *path, const void *data,
                   size_t len, unsigned mode, int flags, tw_err *err)
{
    const char *p = data;
    size_t left = len;
    int fd;

    memset(s, 0, sizeof(*s));
    s->path = path;
    s->flags = flags;
    s->dir = tw__dirname(path);
    s->tmp = tw__malloc(strlen(path) + sizeof(".tmp.XXXXXX"));
    if (s->dir == NULL || s->tmp == NULL) {
        tw__stage_abort(s);
        return tw__err_nomem(err);
    }
    sprintf(s->tmp, "%s.tmp.XXXXXX", path);
    fd = mkstemp(s->tmp); /* created 0600, O_EXCL */
    if (fd < 0) {
        tw__err(err, TW_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        tw__free(s->tmp);
        s->tmp = NULL;
        tw__stage_abort(s);
        return -1;
    }
    while (left > 0) {
        ssize_t n = write(fd, p, left);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            goto err;
        }
        p += n;
        left -= (size_t)n;
    }
    if (fchmod(fd, (mode_t)mode) != 0 || fsync(fd) != 0)
        goto err;
    if (close(fd) != 0) {
        fd = -1;
        goto err;
    }
    return 0;
err:
    tw__err(err, TW_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    tw__stage_abort(s);
    return -1;
}

int tw__stage_commit(tw__staged *s, tw_err *err)
{
    int rc = -1;

    if (s->flags & TW__WRITE_NO_REPLACE) {
        /* link() fails with EEXIST rather than replace: no race with a
         * concurrent writer of the same name. */
        if (link(s->tmp, s->path) != 0) {
            if (errno == EEXIST)
                tw__err(err, TW_ERR_IO,
                        "%s already exists: not replacing it", s->path);
            else
                tw__err(err, TW_ERR_IO, "cannot write %s: %s", s->path,
                        strerror(errno));
            goto done;
        }
    } else if (rename(s->tmp, s->path) != 0) {
        tw__err(err, TW_ERR_IO, "cannot write %s: %s", s->path,
                strerror(errno));
        goto done;
    } else {
        tw__free(s->tmp);
        s->tmp = NULL; /* renamed: nothing to unlink */
    }
    if (fsync_dir(s->dir) != 0) {
        tw__err(err, TW_ERR_IO, "cannot sync directory %s: %s", s->dir,
                strerror(errno));
        goto done;
    }
    rc = 0;
done:
    tw__stage_abort(s);
    return rc;
}

int tw__write_file_atomic(const char *path, const void *data, size_t len,
                          unsigned mode, int flags, tw_err *err)
{
    tw__staged s;

    if (tw__stage_file(&s, path, data, len, mode, flags, err) < 0)
        return -1;
    return tw__stage_commit(&s, err);
}
