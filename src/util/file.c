/*
 * fileio.c - reading bounded files and writing files atomically.
 *
 * A key file must never be readable by others, even for an instant, and a
 * crash must never leave half a file behind: the data goes to a temporary
 * file made by mkstemp (mode 0600 from its creation), is fsync'ed, gets its
 * final mode, and is renamed (or linked, to refuse replacing) into place;
 * then the directory is fsync'ed so the new name survives power loss.
 */
#include "util.h"

#include <openssl/crypto.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *twu_read_file(const char *path, size_t max, size_t *len, tw_err *err)
{
    char *buf = NULL;
    size_t used = 0, cap = 0;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        twu_err(err, TW_ERR_IO, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    for (;;) {
        ssize_t n;

        if (used == cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            char *nbuf;

            if (cap >= max + 1) {
                twu_err(err, TW_ERR_INPUT,
                        "%s is larger than %zu bytes: is it the right file?",
                        path, max);
                goto err;
            }
            if (ncap > max + 1)
                ncap = max + 1;
            nbuf = twu_malloc(ncap + 1);
            if (nbuf == NULL) {
                twu_err_nomem(err);
                goto err;
            }
            if (buf != NULL) {
                memcpy(nbuf, buf, used);
                twu_free_secret(buf, cap);
            }
            buf = nbuf;
            cap = ncap;
        }
        n = read(fd, buf + used, cap - used);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            twu_err(err, TW_ERR_IO, "cannot read %s: %s", path,
                    strerror(errno));
            goto err;
        }
        if (n == 0)
            break;
        used += (size_t)n;
        if (used > max) {
            twu_err(err, TW_ERR_INPUT,
                    "%s is larger than %zu bytes: is it the right file?",
                    path, max);
            goto err;
        }
    }
    if (buf == NULL && (buf = twu_malloc(1)) == NULL) {
        twu_err_nomem(err);
        goto err;
    }
    buf[used] = '\0';
    close(fd);
    *len = used;
    return buf;
err:
    twu_free_secret(buf, cap);
    close(fd);
    return NULL;
}

char *twu_read_passphrase_file(const char *path, const char *option,
                               tw_err *err)
{
    tw_err rerr;
    size_t len;
    char *data = twu_read_file(path, TWU_PASSPHRASE_MAX, &len, &rerr);
    char *pass;

    if (data == NULL) {
        twu_err(err, rerr.cls, "%s: %s", option, rerr.msg);
        return NULL;
    }
    data[strcspn(data, "\r\n")] = '\0';
    if (data[0] == '\0') {
        twu_err(err, TW_ERR_USAGE, "%s %s: the first line is empty", option,
                path);
        twu_free_secret(data, len);
        return NULL;
    }
    pass = twu_strdup(data);
    twu_free_secret(data, len);
    if (pass == NULL)
        twu_err_nomem(err);
    return pass;
}

void twu_free_passphrase(char *pass)
{
    if (pass != NULL)
        twu_free_secret(pass, strlen(pass));
}

void twu_free_secret(void *p, size_t len)
{
    if (p == NULL)
        return;
    OPENSSL_cleanse(p, len);
    twu_free(p);
}

char *twu_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        return twu_strdup(".");
    if (slash == path)
        return twu_strdup("/");
    return twu_strndup(path, (size_t)(slash - path));
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

int twu_rename(const char *from, const char *to, tw_err *err)
{
    char *dir;
    int rc;

    if (rename(from, to) != 0)
        return twu_err(err, TW_ERR_IO, "cannot rename %s to %s: %s", from, to,
                       strerror(errno));
    if ((dir = twu_dirname(to)) == NULL)
        return twu_err_nomem(err);
    rc = fsync_dir(dir);
    if (rc != 0)
        twu_err(err, TW_ERR_IO, "cannot sync directory %s: %s", dir,
                strerror(errno));
    twu_free(dir);
    return rc == 0 ? 0 : -1;
}

void twu_stage_abort(twu_staged *s)
{
    if (s->tmp != NULL)
        unlink(s->tmp);
    twu_free(s->tmp);
    twu_free(s->dir);
    s->tmp = s->dir = NULL;
}

int twu_stage_file(twu_staged *s, const char *path, const void *data,
                   size_t len, unsigned mode, int flags, tw_err *err)
{
    const char *p = data;
    size_t left = len;
    int fd;

    memset(s, 0, sizeof(*s));
    s->path = path;
    s->flags = flags;
    s->dir = twu_dirname(path);
    s->tmp = twu_malloc(strlen(path) + sizeof(".tmp.XXXXXX"));
    if (s->dir == NULL || s->tmp == NULL) {
        twu_stage_abort(s);
        return twu_err_nomem(err);
    }
    sprintf(s->tmp, "%s.tmp.XXXXXX", path);
    fd = mkstemp(s->tmp); /* created 0600, O_EXCL */
    if (fd < 0) {
        twu_err(err, TW_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        twu_free(s->tmp);
        s->tmp = NULL;
        twu_stage_abort(s);
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
    twu_err(err, TW_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    twu_stage_abort(s);
    return -1;
}

int twu_stage_commit(twu_staged *s, tw_err *err)
{
    int rc = -1;

    if (s->flags & TWU_WRITE_NO_REPLACE) {
        /* link() fails with EEXIST rather than replace: no race with a
         * concurrent writer of the same name. */
        if (link(s->tmp, s->path) != 0) {
            if (errno == EEXIST)
                twu_err(err, TW_ERR_IO,
                        "%s already exists: not replacing it", s->path);
            else
                twu_err(err, TW_ERR_IO, "cannot write %s: %s", s->path,
                        strerror(errno));
            goto done;
        }
    } else if (rename(s->tmp, s->path) != 0) {
        twu_err(err, TW_ERR_IO, "cannot write %s: %s", s->path,
                strerror(errno));
        goto done;
    } else {
        twu_free(s->tmp);
        s->tmp = NULL; /* renamed: nothing to unlink */
    }
    if (fsync_dir(s->dir) != 0) {
        twu_err(err, TW_ERR_IO, "cannot sync directory %s: %s", s->dir,
                strerror(errno));
        goto done;
    }
    rc = 0;
done:
    twu_stage_abort(s);
    return rc;
}

int twu_write_file_atomic(const char *path, const void *data, size_t len,
                          unsigned mode, int flags, tw_err *err)
{
    twu_staged s;

    if (twu_stage_file(&s, path, data, len, mode, flags, err) < 0)
        return -1;
    return twu_stage_commit(&s, err);
}
