/*
 * logline.c - one line of a program's operational log (stderr), in text
 * or JSON, at a level read from how the program worded it: a line that
 * starts with "error: ", "warning: " or "debug: " is at that level, any
 * other is info.  Text lines are "TIME PROGRAM: TEXT" as before; JSON lines
 * are {"time","level","program","message"} with the message without its
 * level word.  Control characters from peers never reach the terminal or
 * a log parser raw: '?' in text, escaped in JSON.
 */
#include "util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

static const char *const names[] = {
    [TWU_LOG_ERROR] = "error", [TWU_LOG_WARN] = "warn",
    [TWU_LOG_INFO] = "info", [TWU_LOG_DEBUG] = "debug"};

int twu_log_level_parse(const char *name)
{
    for (int l = TWU_LOG_ERROR; l <= TWU_LOG_DEBUG; l++)
        if (strcasecmp(name, names[l]) == 0)
            return l;
    return strcasecmp(name, "warning") == 0 ? TWU_LOG_WARN : -1;
}

int twu_log_level_of(const char *text, const char **message)
{
    static const struct {
        const char *word;
        int level;
    } words[] = {{"error: ", TWU_LOG_ERROR}, {"warning: ", TWU_LOG_WARN},
                 {"debug: ", TWU_LOG_DEBUG}};

    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strncmp(text, words[i].word, strlen(words[i].word)) == 0) {
            *message = text + strlen(words[i].word);
            return words[i].level;
        }
    *message = text;
    return TWU_LOG_INFO;
}

int twu_log_line(char *buf, size_t len, const char *program, int json,
                 int max_level, const char *text)
{
    const char *message;
    int level = twu_log_level_of(text, &message);
    char ts[40];
    struct timeval tv;
    struct tm tm;

    if (level > (max_level ? max_level : TWU_LOG_INFO))
        return 0;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    if (!json) {
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
        snprintf(buf, len > 0 ? len - 1 : 0, "%s %s: %s", ts, program, text);
        for (char *p = buf; *p != '\0'; p++)
            if ((unsigned char)*p < 0x20)
                *p = '?';
    } else {
        json_t *o;
        char *s;

        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(ts + strlen(ts), sizeof(ts) - strlen(ts), ".%03dZ",
                 (int)(tv.tv_usec / 1000));
        o = json_pack("{s:s, s:s, s:s, s:s}", "time", ts, "level", names[level],
                      "program", program, "message", message);
        s = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
        snprintf(buf, len > 0 ? len - 1 : 0, "%s",
                 s ? s : "{\"level\":\"error\",\"message\":\"out of memory\"}");
        free(s);
        json_decref(o);
    }
    strcat(buf, "\n");
    return 1;
}
