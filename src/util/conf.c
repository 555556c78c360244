/*
 * conf.c - `--config FILE`: a program's long options as `name = value`
 * lines, turned into the argument vector its getopt_long parser already
 * reads, so that a file and a command line mean exactly the same.
 *
 *     # the Invoice Server
 *     cert = /etc/twoway/invoice-server/cert.pem
 *     allow = read O=MailServer       # repeatable options repeat
 *     allow = "metrics O=ABC Inc."    # quotes keep spaces at the ends
 *     workers = 2
 *
 * A name is a long option of the program without its dashes; an option
 * without a value (a flag) takes `yes`/`true`/`on` or `no`/`false`/`off`.
 * An unknown name, a missing value, `config`, `help` or `version` are
 * errors naming the file and the line.  The program parses the file's
 * vector first and its command line second: the command line wins.
 */
#include "util.h"

#include <getopt.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define CONF_FILE_MAX (1024 * 1024)

/* twu_conf_load calls so far: the first is the start, any later one a
 * reload.  Atomic: a reload may run on another thread than the start. */
static atomic_int loads;

const char *twu_conf_find(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--config") == 0)
            return i + 1 < argc ? argv[i + 1] : "";
        if (strncmp(argv[i], "--config=", 9) == 0)
            return argv[i] + 9;
    }
    return NULL;
}

void twu_conf_free(twu_conf *c)
{
    twu_free(c->text);
    twu_free(c->argv);
    twu_free(c->line);
    memset(c, 0, sizeof(*c));
}

static char *trim(char *s, char **end)
{
    char *e = s + strlen(s);

    while (*s == ' ' || *s == '\t')
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        e--;
    *e = '\0';
    if (end != NULL)
        *end = e;
    return s;
}

static const struct option *find_option(const struct option *opts,
                                        const char *name)
{
    for (; opts->name != NULL; opts++)
        if (strcmp(opts->name, name) == 0)
            return opts;
    return NULL;
}

/* 1 yes, 0 no, -1 neither. */
static int flag_value(const char *v)
{
    static const char *const yes[] = {"", "yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (strcasecmp(v, yes[i]) == 0)
            return 1;
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (strcasecmp(v, no[i]) == 0)
            return 0;
    return -1;
}

/* Room for `n` more arguments. */
static int grow(twu_conf *c, int n, tw_err *err)
{
    char **argv = twu_realloc(c->argv, sizeof(char *) * (size_t)(c->argc + n + 1));
    int *line;

    if (argv == NULL)
        return twu_err_nomem(err);
    c->argv = argv;
    if ((line = twu_realloc(c->line, sizeof(int) * (size_t)(c->argc + n + 1))) == NULL)
        return twu_err_nomem(err);
    c->line = line;
    return 0;
}

static int add(twu_conf *c, char *arg, int line)
{
    c->argv[c->argc] = arg;
    c->line[c->argc] = line;
    c->argc++;
    c->argv[c->argc] = NULL;
    return 0;
}

/* One line: nothing (blank, comment) or an option and maybe its value. */
static int read_line(twu_conf *c, char *s, int n, const char *path,
                     const struct option *opts, tw_err *err)
{
    char *eq, *name, *value = NULL, *end, *hash;
    const struct option *o;
    int yes;

    s = trim(s, NULL);
    if (*s == '\0' || *s == '#')
        return 0;
    if ((eq = strchr(s, '=')) != NULL) {
        *eq = '\0';
        value = trim(eq + 1, &end);
        if (*value == '"') {
            char *close = strchr(value + 1, '"');

            if (close == NULL)
                return twu_err(err, TW_ERR_USAGE, "%s:%d: a value opened with "
                               "\" is not closed", path, n);
            *close = '\0';
            value++;
            end = trim(close + 1, NULL);
            if (*end != '\0' && *end != '#')
                return twu_err(err, TW_ERR_USAGE, "%s:%d: text after the "
                               "closing \" (a # starts a comment)", path, n);
        } else if ((hash = strstr(value, " #")) != NULL ||
                   (hash = strstr(value, "\t#")) != NULL) {
            *hash = '\0';
            value = trim(value, NULL);
        }
    }
    name = trim(s, NULL);
    if (strncmp(name, "--", 2) == 0)
        name += 2;
    if (strcmp(name, "config") == 0 || strcmp(name, "help") == 0 ||
        strcmp(name, "version") == 0)
        return twu_err(err, TW_ERR_USAGE, "%s:%d: '%s' cannot be set in a "
                       "config file", path, n, name);
    if ((o = find_option(opts, name)) == NULL)
        return twu_err(err, TW_ERR_USAGE, "%s:%d: unknown option '%s' (a "
                       "config line is a long option without its dashes: "
                       "name = value)", path, n, name);
    if (o->has_arg == no_argument) {
        if ((yes = flag_value(value ? value : "")) < 0)
            return twu_err(err, TW_ERR_USAGE, "%s:%d: '%s' is a yes/no "
                           "option: give yes or no, not '%s'", path, n, name,
                           value);
        if (!yes)
            return 0;
        name[-2] = '-', name[-1] = '-'; /* room made by read_file */
        if (grow(c, 1, err) < 0)
            return -1;
        return add(c, name - 2, n);
    }
    if (value == NULL)
        return twu_err(err, TW_ERR_USAGE, "%s:%d: '%s' needs a value: %s = "
                       "VALUE", path, n, name, name);
    name[-2] = '-', name[-1] = '-';
    if (grow(c, 2, err) < 0)
        return -1;
    add(c, name - 2, n);
    return add(c, value, n);
}

int twu_conf_load(twu_conf *c, const char *path, const char *prog,
                  const struct option *opts, tw_err *err)
{
    size_t len, out = 0;
    char *raw;
    int n = 0;

    atomic_fetch_add(&loads, 1);
    memset(c, 0, sizeof(*c));
    c->path = path;
    if (path[0] == '\0')
        return twu_err(err, TW_ERR_USAGE, "--config needs a FILE");
    if ((raw = twu_read_file(path, CONF_FILE_MAX, &len, err)) == NULL)
        return -1;
    if (memchr(raw, '\0', len) != NULL) {
        twu_free(raw);
        return twu_err(err, TW_ERR_USAGE, "%s holds a NUL byte: not a config "
                       "file", path);
    }
    /* Each line is copied with two bytes in front, where "--" goes before
     * the option's name: the vector points into these copies. */
    if ((c->text = twu_malloc(len * 4 + 4)) == NULL) {
        twu_free(raw);
        return twu_err_nomem(err);
    }
    if (grow(c, 1, err) < 0)
        goto err;
    add(c, (char *)prog, 0);
    for (const char *s = raw, *next; s < raw + len; s = next) {
        const char *nl = memchr(s, '\n', (size_t)(raw + len - s));
        size_t l = nl ? (size_t)(nl - s) : (size_t)(raw + len - s);
        char *slot = c->text + out;

        next = nl ? nl + 1 : raw + len;
        n++;
        slot[0] = slot[1] = ' ';
        memcpy(slot + 2, s, l);
        slot[2 + l] = '\0';
        out += l + 3;
        if (read_line(c, slot + 2, n, path, opts, err) < 0)
            goto err;
    }
    twu_free(raw);
    return 0;
err:
    twu_free(raw);
    twu_conf_free(c);
    return -1;
}

int twu_conf_reloading(void)
{
    return atomic_load(&loads) > 1;
}

int twu_conf_line(const twu_conf *c, int argi)
{
    return argi > 0 && argi < c->argc ? c->line[argi] : 0;
}
