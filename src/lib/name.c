/*
 * name.c - distinguished names in the `openssl -subj` form.
 *
 * "/O=ABC Inc./CN=localhost": a '/' before each attribute, TYPE=VALUE, a
 * backslash escaping the next character.  Parsing is strict: each mistake
 * is reported with its position, and values are held to the upper bounds
 * of RFC 5280 Appendix A.
 */
#include "tw_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#define NAME_TEXT_MAX 4096

/* RFC 5280 Appendix A upper bounds, in characters. */
static int upper_bound(int nid)
{
    switch (nid) {
    case NID_countryName: return 2;
    case NID_commonName:
    case NID_organizationName:
    case NID_organizationalUnitName: return 64;
    case NID_localityName:
    case NID_stateOrProvinceName: return 128;
    case NID_pkcs9_emailAddress: return 255;
    case NID_serialNumber: return 64;
    default: return 256;
    }
}

/* UTF-8 characters in s[0..len). */
static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            n++;
    return n;
}

static int add_attribute(X509_NAME *name, const char *type, const char *value,
                         size_t value_len, size_t pos, tw_err *err)
{
    int nid = OBJ_txt2nid(type);

    if (nid == NID_undef)
        return twu_err(err, TW_ERR_USAGE,
                       "unknown attribute '%s' at position %zu: use C, ST, L, "
                       "O, OU, CN, emailAddress or another OpenSSL name",
                       type, pos);
    if (value_len == 0)
        return twu_err(err, TW_ERR_USAGE,
                       "attribute %s at position %zu has an empty value", type,
                       pos);
    for (size_t i = 0; i < value_len; i++)
        if ((unsigned char)value[i] < 0x20 || value[i] == 0x7f)
            return twu_err(err, TW_ERR_USAGE,
                           "attribute %s at position %zu holds a control "
                           "character", type, pos);
    if (nid == NID_countryName && value_len != 2)
        return twu_err(err, TW_ERR_USAGE,
                       "attribute C at position %zu must be a two-letter "
                       "country code", pos);
    if (utf8_chars(value, value_len) > (size_t)upper_bound(nid))
        return twu_err(err, TW_ERR_USAGE,
                       "attribute %s at position %zu is longer than %d "
                       "characters (RFC 5280 upper bound)",
                       type, pos, upper_bound(nid));
    if (X509_NAME_add_entry_by_NID(name, nid, MBSTRING_UTF8,
                                   (const unsigned char *)value,
                                   (int)value_len, -1, 0) != 1)
        return twu_err_ssl(err, TW_ERR_USAGE,
                           "attribute %s at position %zu is not valid "
                           "(not UTF-8?)", type, pos);
    return 0;
}

tw_name *tw_name_parse(const char *text, tw_err *err)
{
    tw_name *out = NULL;
    X509_NAME *name = NULL;
    char *buf = NULL;
    size_t len, i;

    if (text == NULL || text[0] != '/') {
        twu_err(err, TW_ERR_USAGE,
                "subject '%s' must start with '/', as in \"/O=ABC Inc./CN=localhost\"",
                text ? text : "");
        return NULL;
    }
    len = strlen(text);
    if (len > NAME_TEXT_MAX) {
        twu_err(err, TW_ERR_USAGE, "subject is longer than %d bytes",
                NAME_TEXT_MAX);
        return NULL;
    }
    /* One buffer holds the unescaped TYPE and VALUE of the current part. */
    if ((buf = twu_malloc(len + 1)) == NULL || (name = X509_NAME_new()) == NULL) {
        twu_err_nomem(err);
        goto err;
    }
    i = 1;
    while (i <= len) {
        size_t start = i, n = 0, eq = (size_t)-1;

        for (; i < len && text[i] != '/'; i++) {
            if (text[i] == '\\') {
                if (++i == len) {
                    twu_err(err, TW_ERR_USAGE,
                            "subject ends with a lone backslash");
                    goto err;
                }
            } else if (text[i] == '=' && eq == (size_t)-1) {
                eq = n;
                buf[n++] = '\0';
                continue;
            }
            buf[n++] = text[i];
        }
        buf[n] = '\0';
        if (n == 0 && i == len && start == len) {
            if (start == 1) {
                twu_err(err, TW_ERR_USAGE, "subject '/' names no attribute");
                goto err;
            }
            break; /* a trailing '/' is harmless */
        }
        if (eq == (size_t)-1) {
            twu_err(err, TW_ERR_USAGE,
                    "part %zu of the subject ('%.*s') has no '=': write TYPE=VALUE",
                    start, (int)(i - start), text + start);
            goto err;
        }
        if (eq == 0) {
            twu_err(err, TW_ERR_USAGE,
                    "part at position %zu of the subject has no attribute "
                    "type before '='", start);
            goto err;
        }
        if (add_attribute(name, buf, buf + eq + 1, n - eq - 1, start, err) < 0)
            goto err;
        i++; /* skip '/' */
    }
    if (X509_NAME_entry_count(name) == 0) {
        twu_err(err, TW_ERR_USAGE, "subject names no attribute");
        goto err;
    }
    if ((out = twu_calloc(1, sizeof(*out))) == NULL ||
        (out->text = tw__name_text(name)) == NULL) {
        twu_err_nomem(err);
        goto err;
    }
    out->name = name;
    twu_free(buf);
    return out;
err:
    if (out != NULL)
        twu_free(out->text);
    twu_free(out);
    X509_NAME_free(name);
    twu_free(buf);
    return NULL;
}

char *tw__name_text(const X509_NAME *name)
{
    size_t cap = 256, used = 0;
    char *out = twu_malloc(cap);
    int count = X509_NAME_entry_count(name);

    if (out == NULL)
        return NULL;
    out[0] = '\0';
    for (int i = 0; i < count; i++) {
        const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
        ASN1_OBJECT *obj = X509_NAME_ENTRY_get_object(e);
        unsigned char *value = NULL;
        char type[80];
        int nid = OBJ_obj2nid(obj), vlen;
        size_t need;

        if (nid != NID_undef && OBJ_nid2sn(nid) != NULL)
            snprintf(type, sizeof(type), "%s", OBJ_nid2sn(nid));
        else
            OBJ_obj2txt(type, sizeof(type), obj, 1);
        vlen = ASN1_STRING_to_UTF8(&value, X509_NAME_ENTRY_get_data(e));
        if (vlen < 0) {
            /* Not convertible: show it as hex, so it is still visible. */
            value = NULL;
            vlen = 0;
        }
        need = used + strlen(type) + 2 + 2 * (size_t)vlen + 1;
        if (need > cap) {
            char *n;

            while (cap < need)
                cap *= 2;
            if ((n = twu_realloc(out, cap)) == NULL) {
                OPENSSL_free(value);
                twu_free(out);
                return NULL;
            }
            out = n;
        }
        used += (size_t)sprintf(out + used, "/%s=", type);
        for (int j = 0; j < vlen; j++) {
            unsigned char c = value[j];

            if (c == '/' || c == '\\')
                out[used++] = '\\';
            /* Control characters would let a name forge log lines. */
            out[used++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
        }
        out[used] = '\0';
        OPENSSL_free(value);
    }
    /* Identities keep these strings as long as a connection lives. */
    if (used + 1 < cap) {
        char *fit = twu_realloc(out, used + 1);

        if (fit != NULL)
            out = fit;
    }
    return out;
}

const char *tw_name_text(const tw_name *name)
{
    return name->text;
}

void tw_name_free(tw_name *name)
{
    if (name == NULL)
        return;
    X509_NAME_free(name->name);
    twu_free(name->text);
    twu_free(name);
}
