/* policy_test.c - authorization rules: parsing, every field's matching,
 * wildcards, errors that say what and where, roles, files, and allocation
 * failures.  Identities come from real certificates issued in-process. */
#include "policy_internal.h"
#include "unit_helpers.h"

static tw_key *ca_key;
static tw_cert *ca_cert;

static int setup_ca(void **state)
{
    (void)state;
    ca_key = th_key("ec-p256");
    ca_cert = th_ca("/O=Policy Test CA", ca_key);
    return 0;
}

static int teardown_ca(void **state)
{
    (void)state;
    tw_cert_free(ca_cert);
    tw_key_free(ca_key);
    return 0;
}

/* A client certificate for `subject` and SANs ("dns:...", "ip:..."), issued
 * by the test CA; its identity, and the certificate when `cert` is set. */
static tw_identity *issue(const char *subject, const char *const *sans,
                          tw_cert **cert)
{
    struct th_spec spec = {.subject = subject, .purposes = TW_PURPOSE_CLIENT};
    tw_key *key = th_key("ec-p256");
    tw_cert *c;
    tw_identity *id;
    tw_err err;

    for (size_t i = 0; sans != NULL && sans[i] != NULL; i++)
        spec.sans[i] = sans[i];
    c = th_sign(&spec, key, ca_cert, ca_key);
    if ((id = tw_identity_from_cert(c, &err)) == NULL)
        fail_msg("identity of %s: %s", subject, err.msg);
    tw_key_free(key);
    if (cert != NULL)
        *cert = c;
    else
        tw_cert_free(c);
    return id;
}

#define SANS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Whether the one rule `rule` (its role must be "r") gives "r" to `id`;
 * asking for any role (NULL, as expectations do) must agree. */
static int grants(const tw_identity *id, const char *rule)
{
    tw_err err;
    tw_policy *p = tw_policy_new(&err);
    const char *why = NULL;
    int yes;

    assert_non_null(p);
    if (tw_policy_add_rule(p, rule, &err) != 0)
        fail_msg("rule '%s' refused: %s", rule, err.msg);
    yes = tw_policy_allows(p, id, "r", &why);
    assert_int_equal(tw_policy_allows(p, id, NULL, NULL), yes);
    assert_int_equal(tw_policy_allows(p, id, "other", NULL), 0);
    if (yes)
        assert_non_null(why);
    else
        assert_null(why);
    tw_policy_free(p);
    return yes;
}

#define YES(id, rule)                                                         \
    do {                                                                      \
        if (!grants((id), (rule)))                                            \
            fail_msg("'%s' should match %s", (rule),                          \
                     tw_identity_subject(id));                                \
    } while (0)
#define NO(id, rule)                                                          \
    do {                                                                      \
        if (grants((id), (rule)))                                             \
            fail_msg("'%s' must not match %s", (rule),                        \
                     tw_identity_subject(id));                                \
    } while (0)

/* The normalised text of `rule` as tw_policy_allows reports it. */
static void assert_why(const tw_identity *id, const char *rule,
                       const char *want)
{
    tw_err err;
    tw_policy *p = tw_policy_new(&err), *again = tw_policy_new(&err);
    const char *why = NULL, *why2 = NULL;

    assert_non_null(p);
    assert_non_null(again);
    if (tw_policy_add_rule(p, rule, &err) != 0)
        fail_msg("rule '%s' refused: %s", rule, err.msg);
    assert_int_equal(tw_policy_allows(p, id, NULL, &why), 1);
    assert_string_equal(why, want);
    /* The normalised text reads back as the same rule. */
    assert_int_equal(tw_policy_add_rule(again, why, &err), 0);
    assert_int_equal(tw_policy_allows(again, id, NULL, &why2), 1);
    assert_string_equal(why2, want);
    tw_policy_free(again);
    tw_policy_free(p);
}

static void subject_attributes_match_any_value_exactly(void **state)
{
    tw_identity *id =
        issue("/O=ABC Inc./OU=Billing/OU=Ops/CN=mail.abc.example", NULL, NULL);

    (void)state;
    YES(id, "r O=\"ABC Inc.\"");
    YES(id, "r OU=Billing");
    YES(id, "r OU=Ops"); /* the second OU counts as much as the first */
    YES(id, "r CN=mail.abc.example");
    YES(id, "r O=\"ABC Inc.\" OU=Ops CN=mail.abc.example");
    NO(id, "r O=\"abc inc.\""); /* case-sensitive */
    NO(id, "r O=ABC");          /* whole values, not prefixes */
    NO(id, "r CN=MAIL.abc.example");
    NO(id, "r OU=Sales");
    NO(id, "r O=\"ABC Inc.\" OU=Sales"); /* every field must match */
    NO(id, "r CN=Billing");              /* an OU is not a CN */
    tw_identity_free(id);
}

/* The classic injection: the subject as text contains "O=MailServer", but
 * the certificate has no O at all. */
static void cn_holding_o_equals_text_is_not_an_o(void **state)
{
    tw_identity *id = issue("/CN=O=MailServer", NULL, NULL);
    tw_identity *slash = issue("/CN=x\\/O=MailServer", NULL, NULL);

    (void)state;
    assert_non_null(strstr(tw_identity_subject(id), "O=MailServer"));
    assert_int_equal(tw_identity_field_count(id, "O"), 0);
    NO(id, "r O=MailServer");
    YES(id, "r CN=\"O=MailServer\"");
    YES(id, "r CN=O=MailServer"); /* the first '=' ends the field name */
    assert_non_null(strstr(tw_identity_subject(slash), "/O=MailServer"));
    NO(slash, "r O=MailServer");
    YES(slash, "r CN=x/O=MailServer");
    tw_identity_free(slash);
    tw_identity_free(id);
}

static void fields_the_identity_lacks_never_match(void **state)
{
    tw_identity *id = issue("/CN=bare", NULL, NULL);

    (void)state;
    YES(id, "r CN=bare");
    NO(id, "r O=bare");
    NO(id, "r OU=bare");
    NO(id, "r dns=bare"); /* no SAN: the CN is not a DNS name here */
    NO(id, "r dns=*.bare.example");
    NO(id, "r uri=spiffe://bare/*");
    NO(id, "r email=bare@bare.example");
    NO(id, "r ip=127.0.0.1");
    NO(id, "r CN=bare ip=127.0.0.1");
    tw_identity_free(id);
}

static void dns_is_case_insensitive_with_one_label_wildcards(void **state)
{
    tw_identity *id = issue("/CN=dns",
                            SANS("dns:a.example.com", "dns:x.y.example.net",
                                 "dns:Mixed.Example.ORG"), NULL);
    tw_identity *apex = issue("/CN=apex", SANS("dns:example.com"), NULL);
    tw_identity *wild = issue("/CN=wild", SANS("dns:*.example.com"), NULL);

    (void)state;
    YES(id, "r dns=a.example.com");
    YES(id, "r dns=A.EXAMPLE.com");
    YES(id, "r dns=mixed.example.org");
    YES(id, "r dns=*.example.com");
    YES(id, "r dns=*.Example.COM");
    YES(id, "r dns=*.y.example.net");
    NO(id, "r dns=*.example.net"); /* x.y.example.net is two labels deeper */
    NO(id, "r dns=b.example.com");
    NO(id, "r dns=example.com");
    NO(id, "r dns=a.example.co");
    NO(apex, "r dns=*.example.com"); /* the wildcard needs one label */
    YES(apex, "r dns=example.com");
    /* A wildcard certificate only matches the same wildcard text. */
    YES(wild, "r dns=*.example.com");
    YES(wild, "r dns=*.EXAMPLE.com");
    NO(wild, "r dns=a.example.com");
    NO(wild, "r dns=*.a.example.com");
    tw_identity_free(wild);
    tw_identity_free(apex);
    tw_identity_free(id);
}

static void uri_star_is_one_whole_segment(void **state)
{
    tw_identity *id = issue("/CN=uri", SANS("uri:spiffe://abc.example/svc/mail"),
                            NULL);
    tw_identity *deep = issue("/CN=deep",
                              SANS("uri:spiffe://abc.example/svc/mail/x"), NULL);
    tw_identity *trail = issue("/CN=trail",
                               SANS("uri:spiffe://abc.example/svc/"), NULL);

    (void)state;
    YES(id, "r uri=spiffe://abc.example/svc/mail");
    YES(id, "r uri=spiffe://abc.example/svc/*");
    YES(id, "r uri=spiffe://abc.example/*/mail");
    YES(id, "r uri=spiffe://*/svc/mail");
    NO(id, "r uri=spiffe://abc.example/*");
    NO(id, "r uri=spiffe://abc.example/svc");
    NO(id, "r uri=spiffe://abc.example/svc/mail/");
    NO(id, "r uri=spiffe://abc.example/svc/mail/*");
    NO(id, "r uri=spiffe://ABC.example/svc/mail"); /* exact, case and all */
    NO(id, "r uri=https://abc.example/svc/mail");
    NO(deep, "r uri=spiffe://abc.example/svc/*");
    YES(deep, "r uri=spiffe://abc.example/svc/*/x");
    YES(deep, "r uri=spiffe://abc.example/svc/*/*");
    NO(trail, "r uri=spiffe://abc.example/svc/*"); /* an empty segment */
    YES(trail, "r uri=spiffe://abc.example/svc/");
    tw_identity_free(trail);
    tw_identity_free(deep);
    tw_identity_free(id);
}

static void email_local_part_exact_domain_any_case(void **state)
{
    tw_identity *id = issue("/CN=mail", SANS("email:Ops.Team@ABC.Example"),
                            NULL);

    (void)state;
    YES(id, "r email=Ops.Team@ABC.Example");
    YES(id, "r email=Ops.Team@abc.example");
    YES(id, "r email=Ops.Team@ABC.EXAMPLE");
    NO(id, "r email=ops.team@abc.example");
    NO(id, "r email=Ops.Team@abc.example.com");
    NO(id, "r email=Team@abc.example");
    NO(id, "r CN=Ops.Team@ABC.Example");
    assert_why(id, "r email=Ops.Team@ABC.Example",
               "r email=Ops.Team@abc.example");
    tw_identity_free(id);
}

static void ip_compared_as_addresses(void **state)
{
    tw_identity *id = issue("/CN=ip", SANS("ip:127.0.0.1", "ip:::1",
                                           "ip:2001:db8::10"), NULL);

    (void)state;
    YES(id, "r ip=127.0.0.1");
    YES(id, "r ip=::1");
    YES(id, "r ip=0:0:0:0:0:0:0:1");
    YES(id, "r ip=2001:0DB8:0:0:0:0:0:0010");
    NO(id, "r ip=127.0.0.2");
    NO(id, "r ip=::ffff:127.0.0.1"); /* a mapped address is another family */
    NO(id, "r ip=2001:db8::11");
    assert_why(id, "r ip=0:0:0:0:0:0:0:1", "r ip=::1");
    assert_why(id, "r ip=2001:0DB8:0:0:0:0:0:0010", "r ip=2001:db8::10");
    tw_identity_free(id);
}

/* "AB:CD:..." as `openssl x509 -fingerprint -sha256` prints it. */
static void openssl_style_hex(const unsigned char *md, char *out)
{
    for (int i = 0; i < 32; i++)
        sprintf(out + 3 * i, "%02X%s", md[i], i < 31 ? ":" : "");
}

static void fingerprints_and_key_pins(void **state)
{
    tw_cert *cert;
    tw_identity *id = issue("/CN=pinned", NULL, &cert);
    tw_identity *other = issue("/CN=pinned", NULL, NULL);
    unsigned char md[EVP_MAX_MD_SIZE], *der = NULL;
    unsigned int mdlen;
    char fpr[3 * 32], spki[3 * 32], rule[256], want[256];
    int len;

    (void)state;
    /* Computed here with OpenSSL, not with the identity's accessors. */
    assert_int_equal(X509_digest(cert->x509, EVP_sha256(), md, &mdlen), 1);
    openssl_style_hex(md, fpr);
    len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert->x509), &der);
    assert_true(len > 0);
    assert_int_equal(EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(),
                                NULL), 1);
    OPENSSL_free(der);
    openssl_style_hex(md, spki);

    snprintf(rule, sizeof(rule), "r sha256=%s", fpr);
    YES(id, rule);
    NO(other, rule);
    snprintf(want, sizeof(want), "r sha256=%s", tw_identity_fingerprint(id));
    assert_why(id, rule, want);
    YES(id, want); /* lower case without ':' too */

    snprintf(rule, sizeof(rule), "r spki=%s", spki);
    YES(id, rule);
    NO(other, rule);
    snprintf(want, sizeof(want), "r spki=%s", tw_identity_spki(id));
    assert_why(id, rule, want);

    /* A key pin is not a certificate fingerprint. */
    snprintf(rule, sizeof(rule), "r sha256=%s", tw_identity_spki(id));
    NO(id, rule);
    tw_identity_free(other);
    tw_identity_free(id);
    tw_cert_free(cert);
}

static void repeated_fields_must_all_match(void **state)
{
    tw_identity *both = issue("/OU=Billing/OU=Ops/CN=both", NULL, NULL);
    tw_identity *one = issue("/OU=Billing/CN=one", NULL, NULL);

    (void)state;
    YES(both, "r OU=Billing OU=Ops");
    NO(one, "r OU=Billing OU=Ops");
    YES(one, "r OU=Billing OU=Billing");
    tw_identity_free(one);
    tw_identity_free(both);
}

static void quotes_escapes_comments_and_normal_form(void **state)
{
    tw_identity *id = issue("/O=ABC Inc./OU=Billing/CN=mail.abc.example",
                            SANS("dns:A.Example.com", "ip:::1"), NULL);
    /* O is: Q "x" \ y   OU is: #hash   CN is: a\b */
    tw_identity *odd = issue("/O=Q \"x\" \\\\ y/OU=#hash/CN=a\\\\b", NULL, NULL);
    tw_identity *utf8 = issue("/O=Z\xc3\xbcrich AG/CN=z", NULL, NULL);

    (void)state;
    assert_why(id, "read O=\"ABC Inc.\" OU=Billing",
               "read O=\"ABC Inc.\" OU=Billing");
    /* Blanks, tabs, field names in any case, a trailing comment. */
    assert_why(id, "  read\to=\"ABC Inc.\"   ou=Billing\t# billing may read",
               "read O=\"ABC Inc.\" OU=Billing");
    assert_why(id, "read cn=mail.abc.example DNS=A.EXAMPLE.COM Ip=0::1 #",
               "read CN=mail.abc.example dns=a.example.com ip=::1");
    /* Quotes are only kept where they are needed. */
    assert_why(id, "read OU=\"Billing\"", "read OU=Billing");

    YES(odd, "r O=\"Q \\\"x\\\" \\\\ y\"");
    YES(odd, "r OU=\"#hash\"");
    YES(odd, "r CN=a\\b"); /* a backslash in a bare value is itself */
    YES(odd, "r CN=\"a\\\\b\"");
    NO(odd, "r O=Q");
    NO(odd, "r CN=\"a\\\\\\\\b\"");
    assert_why(odd, "r  O=\"Q \\\"x\\\" \\\\ y\"  OU=\"#hash\" CN=a\\b",
               "r O=\"Q \\\"x\\\" \\\\ y\" OU=\"#hash\" CN=a\\b");
    YES(utf8, "r O=\"Z\xc3\xbcrich AG\"");
    NO(utf8, "r O=\"Zurich AG\"");
    tw_identity_free(utf8);
    tw_identity_free(odd);
    tw_identity_free(id);
}

/* add_rule refuses `line` with TW_ERR_INPUT and a message containing
 * `needle`, and adds nothing. */
static void refused(tw_policy *p, int want_role, const char *line,
                    const char *needle)
{
    size_t before = tw_policy_rule_count(p);
    tw_err err;
    int rc;

    tw_err_clear(&err);
    rc = want_role ? tw_policy_add_rule(p, line, &err)
                   : tw_policy_add_expectation(p, line, &err);
    if (rc == 0)
        fail_msg("'%s' was accepted", line);
    assert_int_equal(rc, -1);
    assert_string_equal(tw_error_class_name(err.cls), "input");
    if (strstr(err.msg, needle) == NULL)
        fail_msg("'%s': message '%s' lacks '%s'", line, err.msg, needle);
    assert_int_equal(tw_policy_rule_count(p), before);
}

static void parse_errors_say_what_and_where(void **state)
{
    static const struct {
        const char *line, *needle;
    } cases[] = {
        {"", "the rule is empty: write ROLE FIELD=VALUE"},
        {"   # only a comment", "the rule is empty"},
        {"read", "the rule gives the role 'read' to no one"},
        {"read   # to nobody", "the rule gives the role 'read' to no one"},
        {"O=MailServer", "'O=MailServer' at column 1 is a field, but a rule "
                         "starts with its role, as in 'read O=MailServer'"},
        {"Read O=x", "role 'Read' at column 1 is not a role name"},
        {"1read O=x", "role '1read' at column 1 is not a role name"},
        {"re.d O=x", "role 're.d' at column 1"},
        {"  r@ O=x", "role 'r@' at column 3"},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa O=x",
         "the role at column 1 is longer than 32 characters"},
        {"read O", "'O' at column 6 is not FIELD=VALUE"},
        {"read O=x junk", "'junk' at column 10 is not FIELD=VALUE"},
        {"read =x", "no field name before the '=' at column 6"},
        {"read O=", "O at column 8 has an empty value"},
        {"read O=\"\"", "O at column 8 has an empty value"},
        {"read O=  CN=x", "O at column 8 has an empty value"},
        {"read O=\"abc", "the quote opened at column 8 is never closed"},
        {"read O=\"abc\\", "the quote opened at column 8 is never closed"},
        {"read O=\"abc\\\"", "the quote opened at column 8 is never closed"},
        {"read O=\"a\\nb\"", "unknown escape '\\n' at column 10: inside "
                             "quotes only \\\" and \\\\ are escapes"},
        {"read O=\"a\"b", "'b' right after the closing quote at column 11"},
        {"read O=\"a\"# c", "'#' right after the closing quote at column 11"},
        {"read O=a\"b\"", "a '\"' inside the value of O at column 9"},
        {"read O=Team#1", "a '#' inside the value of O at column 12: quote "
                          "the value, or put a space before a comment"},
        {"read O=a\001", "control character 0x01 at column 9"},
        {"read O=\"a\rb\"", "control character 0x0d at column 10"},
        {"read O=x\177", "control character 0x7f at column 9"},
        {"read dns=a..b", "the dns value 'a..b' at column 10 has an empty "
                          "label"},
        {"read dns=example.com.", "has an empty label"},
        {"read dns=a.*.com", "'*' in the dns value 'a.*.com' at column 10: "
                             "a wildcard may only be the whole first label"},
        {"read dns=*", "'*' in the dns value '*' at column 10"},
        {"read dns=w*.example.com", "'*' in the dns value"},
        {"read dns=*.com", "the dns value '*.com' at column 10 would match "
                           "every name under a top-level domain"},
        {"read dns=a!b.example", "the dns value 'a!b.example' at column 10 "
                                 "is not a host name"},
        {"read uri=abc.example/svc", "the uri value 'abc.example/svc' at "
                                     "column 10 has no scheme"},
        {"read uri=spiffe://abc.example/svc/mail-*",
         "at column 10 must be a whole path segment"},
        {"read uri=urn:*", "must be a whole path segment"},
        {"read email=nobody", "the email value 'nobody' at column 12 is not "
                              "an address: write local@domain"},
        {"read email=@abc.example", "is not an address"},
        {"read email=ops@", "is not an address"},
        {"read ip=1.2.3", "the ip value '1.2.3' at column 9 is not an IPv4 "
                          "or IPv6 address"},
        {"read ip=10.0.0.0/8", "is not an IPv4 or IPv6 address"},
        {"read ip=localhost", "is not an IPv4 or IPv6 address"},
        {"read sha256=abc", "the sha256 value at column 13 has 3 hex digits; "
                            "a SHA-256 has 64"},
        {"read spki=gggggggggggggggggggggggggggggggggggggggggggggggggggggggggg"
         "gggggg", "the spki value at column 11 holds 'g', which is not a "
                   "hex digit"},
        {"read spki=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "aaaaaaa", "the spki value at column 11 has 65 hex digits"},
        {"read CN=a CN=a CN=a CN=a CN=a CN=a CN=a CN=a CN=a CN=a CN=a CN=a "
         "CN=a CN=a CN=a CN=a CN=a",
         "a rule has at most 16 fields, and column 86 starts one more"},
    };
    tw_err err;
    tw_policy *p = tw_policy_new(&err);
    char line[TW__POLICY_MAX_LINE + 16];

    (void)state;
    assert_non_null(p);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        refused(p, 1, cases[i].line, cases[i].needle);

    /* The whole sentence: where, what, and what would be right. */
    assert_int_equal(tw_policy_add_rule(p, "read CM=x", &err), -1);
    th_assert_err(err, TW_ERR_INPUT,
                  "rule \"read CM=x\": unknown field 'CM' at column 6: use "
                  "CN, O, OU, dns, uri, email, ip, sha256 or spki");
    assert_int_equal(tw_policy_add_rule(p, "", &err), -1);
    th_assert_err(err, TW_ERR_INPUT,
                  "rule \"\": the rule is empty: write ROLE FIELD=VALUE, as "
                  "in 'read O=MailServer'");
    /* A control character is shown as '?' in the message. */
    refused(p, 1, "read\001 O=x", "rule \"read? O=x\": control character");

    /* Expectations have no role. */
    refused(p, 0, "", "expectation \"\": the expectation is empty: write "
                      "FIELD=VALUE, as in 'O=InvoiceServer'");
    refused(p, 0, "read O=x", "'read' at column 1 is not FIELD=VALUE (an "
                              "expectation has no role)");
    refused(p, 0, "O=x CM=y", "unknown field 'CM' at column 5");

    /* Limits: 32-byte role, 16 fields, 253-byte name, 4096-byte line. */
    assert_int_equal(tw_policy_add_rule(
        p, "abcdefghijklmnopqrstuvwxyz012345 O=x", &err), 0);
    assert_int_equal(tw_policy_add_rule(
        p, "read CN=a CN=a CN=a CN=a CN=a CN=a CN=a CN=a CN=a CN=a CN=a CN=a "
           "CN=a CN=a CN=a CN=a # sixteen", &err), 0);
    memset(line, 0, sizeof(line));
    strcpy(line, "read dns=");
    for (size_t i = 0; i < 5; i++) /* 5 labels of 50: 254 characters */
        strcat(line, i == 0 ? "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                            : ".aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                              "a");
    refused(p, 1, line, "at column 10 is longer than 253 characters");
    strcpy(line, "read O=");
    memset(line + 7, 'x', TW__POLICY_MAX_LINE - 7);
    line[TW__POLICY_MAX_LINE] = '\0';
    assert_int_equal(tw_policy_add_rule(p, line, &err), 0);
    line[TW__POLICY_MAX_LINE] = 'x';
    line[TW__POLICY_MAX_LINE + 1] = '\0';
    refused(p, 1, line, "the line is longer than 4096 bytes");
    /* ...and a long line is cut short where it is named. */
    refused(p, 1, line, "rule \"read O=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                        "xxxxxxxxxxxxxxxxxxx...\": ");
    assert_int_equal(tw_policy_rule_count(p), 3);

    /* Misuse. */
    assert_int_equal(tw_policy_add_rule(p, NULL, &err), -1);
    assert_string_equal(tw_error_class_name(err.cls), "usage");
    assert_int_equal(tw_policy_add_rule(NULL, "read O=x", &err), -1);
    assert_string_equal(tw_error_class_name(err.cls), "usage");
    tw_policy_free(p);
    tw_policy_free(NULL);
}

static void expectations_have_no_role(void **state)
{
    tw_identity *server = issue("/CN=localhost/O=InvoiceServer",
                                SANS("dns:localhost"), NULL);
    tw_identity *other = issue("/CN=localhost/O=Impostor",
                               SANS("dns:localhost"), NULL);
    tw_err err;
    tw_policy *p = tw_policy_new(&err);
    const char *why = NULL;
    char buf[64];

    (void)state;
    assert_non_null(p);
    assert_int_equal(tw_policy_add_expectation(p, "O=InvoiceServer dns=localhost",
                                               &err), 0);
    assert_int_equal(tw_policy_rule_count(p), 1);
    assert_int_equal(tw_policy_allows(p, server, NULL, &why), 1);
    assert_string_equal(why, "O=InvoiceServer dns=localhost");
    assert_int_equal(tw_policy_allows(p, other, NULL, NULL), 0);
    /* An expectation gives no role. */
    assert_int_equal(tw_policy_allows(p, server, "read", NULL), 0);
    assert_int_equal(tw_policy_roles(p, server, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
    /* Any rule satisfies a NULL role. */
    assert_int_equal(tw_policy_add_rule(p, "read O=Impostor", &err), 0);
    assert_int_equal(tw_policy_allows(p, other, NULL, &why), 1);
    assert_string_equal(why, "read O=Impostor");
    /* Nothing to match against. */
    assert_int_equal(tw_policy_allows(NULL, server, NULL, NULL), 0);
    assert_int_equal(tw_policy_allows(p, NULL, NULL, NULL), 0);
    tw_policy_free(p);
    tw_identity_free(other);
    tw_identity_free(server);
}

static void roles_are_unique_in_rule_order_and_cut_whole(void **state)
{
    tw_identity *id = issue("/O=A/OU=B/CN=c", NULL, NULL);
    tw_identity *nobody = issue("/O=Z/CN=z", NULL, NULL);
    static const char *rules[] = {
        "read O=A", "metrics CN=nomatch", "write O=A", "read OU=B",
        "metrics O=A OU=B", "admin O=Z",
    };
    tw_err err;
    tw_policy *p = tw_policy_new(&err);
    const char *why;
    char buf[64];

    (void)state;
    assert_non_null(p);
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
        assert_int_equal(tw_policy_add_rule(p, rules[i], &err), 0);
    assert_int_equal(tw_policy_add_expectation(p, "O=A", &err), 0);
    assert_int_equal(tw_policy_rule_count(p), 7);

    assert_int_equal(tw_policy_roles(p, id, buf, sizeof(buf)), 3);
    assert_string_equal(buf, "read,write,metrics");
    assert_int_equal(tw_policy_allows(p, id, "metrics", &why), 1);
    assert_string_equal(why, "metrics O=A OU=B"); /* the rule that matched */
    assert_int_equal(tw_policy_allows(p, id, "admin", NULL), 0);
    assert_int_equal(tw_policy_roles(p, nobody, buf, sizeof(buf)), 1);
    assert_string_equal(buf, "admin");

    /* Cut short: whole roles only, and the count is still all of them. */
    memset(buf, '#', sizeof(buf));
    assert_int_equal(tw_policy_roles(p, id, buf, 11), 3);
    assert_string_equal(buf, "read,write");
    assert_int_equal(buf[11], '#');
    assert_int_equal(tw_policy_roles(p, id, buf, 10), 3);
    assert_string_equal(buf, "read");
    assert_int_equal(tw_policy_roles(p, id, buf, 5), 3);
    assert_string_equal(buf, "read");
    memset(buf, '#', sizeof(buf));
    assert_int_equal(tw_policy_roles(p, id, buf, 4), 3);
    assert_string_equal(buf, "");
    assert_int_equal(buf[1], '#');
    assert_int_equal(tw_policy_roles(p, id, buf, 1), 3);
    assert_string_equal(buf, "");
    assert_int_equal(tw_policy_roles(p, id, NULL, 0), 3);
    assert_int_equal(tw_policy_roles(NULL, id, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
    tw_policy_free(p);
    tw_identity_free(nobody);
    tw_identity_free(id);
}

/* Issue 14: --allow 'raed O=MailServer' (a misspelt role) started a server
 * that then refused every client.  A server can only refuse such a role
 * if the policy lists the roles its rules give, with the rule and, for a
 * file, its FILE:LINE; and it must see the policy its config would give,
 * file and --allow rules alike. */
static void misspelt_role_is_listed_with_its_rule(void **state)
{
    static const char file[] = "# roles\n"
                               "read O=MailServer\n"
                               "\n"
                               "wrte O=MailServer OU=Writers\n"
                               "read CN=other\n";
    char *dir = th_mkdtemp(), path[4096], where_want[4200];
    tw_err err;
    tw_policy *p = tw_policy_new(&err);
    tw_config *cfg = tw_config_new();
    const char *rule = "x", *where = "x";

    (void)state;
    assert_non_null(p);
    assert_non_null(cfg);
    /* Rules added as strings: no FILE:LINE. */
    assert_int_equal(tw_policy_add_rule(p, "raed   O=MailServer", &err), 0);
    assert_int_equal(tw_policy_add_expectation(p, "O=Any", &err), 0);
    assert_int_equal(tw_policy_add_rule(p, "metrics CN=prom", &err), 0);
    assert_int_equal(tw_policy_add_rule(p, "raed CN=second", &err), 0);
    assert_string_equal(tw_policy_role(p, 0, &rule, &where), "raed");
    assert_string_equal(rule, "raed O=MailServer"); /* the first, normalised */
    assert_null(where);
    assert_string_equal(tw_policy_role(p, 1, NULL, NULL), "metrics");
    assert_null(tw_policy_role(p, 2, &rule, &where)); /* expectations: none */
    assert_null(rule);
    assert_null(where);
    assert_null(tw_policy_role(NULL, 0, &rule, NULL));
    tw_policy_free(p);

    /* A config's policy: the file (read now), then the rules, as a server
     * built from the config would have it. */
    th_write(th_path(path, dir, "roles.policy"), file, sizeof(file) - 1);
    assert_int_equal(tw_config_set_policy_file(cfg, path), 0);
    assert_int_equal(tw_config_add_policy_rule(cfg, "raed O=MailServer"), 0);
    assert_non_null(p = tw_policy_new(&err));
    assert_int_equal(tw_policy_load_config(p, cfg, &err), 0);
    assert_int_equal(tw_policy_rule_count(p), 4);
    assert_string_equal(tw_policy_role(p, 0, &rule, &where), "read");
    snprintf(where_want, sizeof(where_want), "%s:2", path);
    assert_string_equal(where, where_want);
    assert_string_equal(tw_policy_role(p, 1, &rule, &where), "wrte");
    assert_string_equal(rule, "wrte O=MailServer OU=Writers");
    snprintf(where_want, sizeof(where_want), "%s:4", path);
    assert_string_equal(where, where_want);
    assert_string_equal(tw_policy_role(p, 2, &rule, &where), "raed");
    assert_null(where);
    assert_null(tw_policy_role(p, 3, NULL, NULL));

    /* The file changed on disk into one that does not parse: all or
     * nothing, and the error a reload would give. */
    th_write(path, "read O=x\nwrite CM=y\n", 20);
    assert_int_equal(tw_policy_load_config(p, cfg, &err), -1);
    assert_int_equal(err.cls, TW_ERR_INPUT);
    assert_non_null(strstr(err.msg, ":2: unknown field 'CM'"));
    assert_int_equal(tw_policy_rule_count(p), 4);
    assert_null(tw_policy_role(p, 3, NULL, NULL));
    tw_policy_free(p);

    /* No policy at all: nothing to list. */
    tw_config_free(cfg);
    assert_non_null(cfg = tw_config_new());
    assert_non_null(p = tw_policy_new(&err));
    assert_int_equal(tw_policy_load_config(p, cfg, &err), 0);
    assert_int_equal(tw_policy_rule_count(p), 0);
    assert_null(tw_policy_role(p, 0, NULL, NULL));
    assert_int_equal(tw_policy_load_config(p, NULL, &err), -1);
    th_assert_err(err, TW_ERR_USAGE, "no policy or no config given");
    tw_policy_free(p);
    tw_config_free(cfg);
    th_rmdir(dir);
}

static void files_comments_blank_lines_and_errors(void **state)
{
    static const char good[] =
        "\xef\xbb\xbf# policy for invoice-server\r\n"
        "\r\n"
        "read O=\"ABC Inc.\" OU=Billing   # billing may read\n"
        " \t \n"
        "write CN=admin\n"
        "  # an indented comment\n"
        "metrics uri=spiffe://abc.example/svc/*"; /* no final newline */
    static const char bad[] = "read O=x\r\n\r\nwrite CM=y\r\nread O=z\n";
    char *dir = th_mkdtemp(), path[4096], missing[4096], msg[8192];
    tw_identity *id = issue("/O=ABC Inc./OU=Billing/CN=b",
                            SANS("uri:spiffe://abc.example/svc/mail"), NULL);
    tw_err err;
    tw_policy *p = tw_policy_new(&err);
    const char *why;
    char buf[64], *big;

    (void)state;
    assert_non_null(p);
    th_write(th_path(path, dir, "good.policy"), good, sizeof(good) - 1);
    assert_int_equal(tw_policy_load_file(p, path, &err), 0);
    assert_int_equal(tw_policy_rule_count(p), 3);
    assert_int_equal(tw_policy_allows(p, id, "read", &why), 1);
    assert_string_equal(why, "read O=\"ABC Inc.\" OU=Billing");
    assert_int_equal(tw_policy_roles(p, id, buf, sizeof(buf)), 2);
    assert_string_equal(buf, "read,metrics");

    /* One bad line: FILE:LINE, and not one rule of the file is added. */
    th_write(th_path(path, dir, "bad.policy"), bad, sizeof(bad) - 1);
    assert_int_equal(tw_policy_load_file(p, path, &err), -1);
    snprintf(msg, sizeof(msg), "%s:3: unknown field 'CM' at column 7: use CN, "
             "O, OU, dns, uri, email, ip, sha256 or spki", path);
    th_assert_err(err, TW_ERR_INPUT, msg);
    assert_int_equal(tw_policy_rule_count(p), 3);

    th_path(missing, dir, "missing.policy");
    assert_int_equal(tw_policy_load_file(p, missing, &err), -1);
    snprintf(msg, sizeof(msg), "cannot read %s: No such file or directory",
             missing);
    th_assert_err(err, TW_ERR_IO, msg);

    /* At most 1 MiB. */
    big = malloc(TW__POLICY_MAX_FILE + 1);
    assert_non_null(big);
    memset(big, '#', TW__POLICY_MAX_FILE + 1);
    th_write(th_path(path, dir, "big.policy"), big, TW__POLICY_MAX_FILE + 1);
    assert_int_equal(tw_policy_load_file(p, path, &err), -1);
    assert_string_equal(tw_error_class_name(err.cls), "input");
    assert_non_null(strstr(err.msg, "is larger than 1048576 bytes"));
    assert_int_equal(tw__policy_load_buffer(p, "big", big,
                                            TW__POLICY_MAX_FILE + 1, &err), -1);
    th_assert_err(err, TW_ERR_INPUT,
                  "big is larger than 1048576 bytes: is it the right file?");
    free(big);

    /* A NUL is a control character, not the end of the line. */
    assert_int_equal(tw__policy_load_buffer(p, "mem", "read O=a\0b\n", 11,
                                            &err), -1);
    th_assert_err(err, TW_ERR_INPUT,
                  "mem:1: control character 0x00 at column 9: a policy is "
                  "plain text");
    /* An empty file is an empty policy. */
    th_write(th_path(path, dir, "empty.policy"), "", 0);
    assert_int_equal(tw_policy_load_file(p, path, &err), 0);
    assert_int_equal(tw_policy_rule_count(p), 3);
    assert_int_equal(tw_policy_load_file(p, NULL, &err), -1);
    assert_string_equal(tw_error_class_name(err.cls), "usage");
    tw_policy_free(p);
    tw_identity_free(id);
    th_rmdir(dir);
}

static void at_most_ten_thousand_rules(void **state)
{
    size_t n = TW__POLICY_MAX_RULES + 1, len = 0;
    char *text = malloc(n * 16);
    tw_err err;
    tw_policy *p = tw_policy_new(&err);

    (void)state;
    assert_non_null(text);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(text + len, "r%zu CN=x\n", i % 7);
    assert_int_equal(tw__policy_load_buffer(p, "many", text, len, &err), -1);
    th_assert_err(err, TW_ERR_INPUT,
                  "many:10001: the policy already holds 10000 rules, the most "
                  "it may");
    assert_int_equal(tw_policy_rule_count(p), 0);
    len -= strlen("r4 CN=x\n"); /* drop line 10001 */
    assert_int_equal(tw__policy_load_buffer(p, "many", text, len, &err), 0);
    assert_int_equal(tw_policy_rule_count(p), TW__POLICY_MAX_RULES);
    assert_int_equal(tw_policy_add_rule(p, "r CN=y", &err), -1);
    th_assert_err(err, TW_ERR_INPUT,
                  "rule \"r CN=y\": the policy already holds 10000 rules, the "
                  "most it may");
    tw_policy_free(p);
    free(text);
}

/* Build a policy that grows its arrays, with one allocation failing. */
static int build_policy(void *ctx, tw_err *err)
{
    static const char text[] =
        "read O=\"ABC Inc.\" OU=Billing\n"
        "# a comment\n"
        "metrics dns=*.example.com ip=::1 sha256=" /* 64 hex digits */
        "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\n"
        "write CN=admin email=ops@ABC.example\n"
        "read uri=spiffe://abc.example/svc/*\n";
    const tw_identity *id = ctx;
    tw_policy *p = tw_policy_new(err);
    size_t before;
    char buf[256], line[64];
    int rc = -1;

    if (p == NULL)
        return -1;
    for (int i = 0; i < 20; i++) { /* past the first 16 slots */
        snprintf(line, sizeof(line), "role%d CN=c%d", i % 18, i);
        if (tw_policy_add_rule(p, line, err) != 0)
            goto out;
    }
    if (tw_policy_add_expectation(p, "O=\"ABC Inc.\"", err) != 0)
        goto out;
    before = tw_policy_rule_count(p);
    if (tw__policy_load_buffer(p, "mem", text, sizeof(text) - 1, err) != 0) {
        assert_int_equal(tw_policy_rule_count(p), before); /* all or nothing */
        goto out;
    }
    assert_int_equal(tw_policy_rule_count(p), 25);
    assert_int_equal(tw_policy_roles(p, id, buf, sizeof(buf)), 2);
    assert_string_equal(buf, "read,write");
    {
        const char *rule, *where;

        assert_string_equal(tw_policy_role(p, 18, &rule, &where), "read");
        assert_string_equal(where, "mem:1");
        assert_string_equal(tw_policy_role(p, 20, &rule, &where), "write");
        assert_string_equal(rule, "write CN=admin email=ops@abc.example");
        assert_string_equal(where, "mem:4");
    }
    rc = 0;
out:
    /* Whatever happened, the policy is whole and usable. */
    (void)tw_policy_roles(p, id, buf, sizeof(buf));
    (void)tw_policy_allows(p, id, "read", NULL);
    tw_policy_free(p);
    return rc;
}

static void allocation_failures_are_clean(void **state)
{
    tw_identity *id = issue("/O=ABC Inc./OU=Billing/CN=admin",
                            SANS("email:ops@abc.example",
                                 "uri:spiffe://abc.example/svc/mail"), NULL);

    (void)state;
    assert_true(th_alloc_fail_loop(build_policy, id) > 40);
    tw_identity_free(id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(subject_attributes_match_any_value_exactly),
        cmocka_unit_test(cn_holding_o_equals_text_is_not_an_o),
        cmocka_unit_test(fields_the_identity_lacks_never_match),
        cmocka_unit_test(dns_is_case_insensitive_with_one_label_wildcards),
        cmocka_unit_test(uri_star_is_one_whole_segment),
        cmocka_unit_test(email_local_part_exact_domain_any_case),
        cmocka_unit_test(ip_compared_as_addresses),
        cmocka_unit_test(fingerprints_and_key_pins),
        cmocka_unit_test(repeated_fields_must_all_match),
        cmocka_unit_test(quotes_escapes_comments_and_normal_form),
        cmocka_unit_test(parse_errors_say_what_and_where),
        cmocka_unit_test(expectations_have_no_role),
        cmocka_unit_test(roles_are_unique_in_rule_order_and_cut_whole),
        cmocka_unit_test(misspelt_role_is_listed_with_its_rule),
        cmocka_unit_test(files_comments_blank_lines_and_errors),
        cmocka_unit_test(at_most_ten_thousand_rules),
        cmocka_unit_test(allocation_failures_are_clean),
    };
    return cmocka_run_group_tests(tests, setup_ca, teardown_ca);
}
