/*
 * twoway.h - libtwoway, mutual TLS for machine-to-machine services.
 *
 * This header: configs, servers, clients, connections, identities, trust,
 * policy, and the errors and refusal reasons they report.  Issuance (keys,
 * subjects, certificates made and written, CSRs, CRLs) is in twoway_pki.h,
 * which includes this one.  Every type is opaque except tw_err, a small
 * value the caller owns and passes to calls that have no object of their
 * own to keep an error in.  No OpenSSL type appears: a certificate from
 * elsewhere (another TLS stack's verify callback) comes in as DER bytes
 * through tw_identity_from_der.
 *
 * Conventions (see docs/internals/errors.md):
 *   - Calls return 0 on success and -1 on failure, or a pointer / NULL.
 *   - On failure, the tw_err passed in holds a class (what kind of failure,
 *     to branch on), a reason (for a refused certificate: which check
 *     failed) and a sentence a person can read, naming the file, field or
 *     certificate and what to do.  `err` may be NULL when the caller does not
 *     care.
 *   - Objects returned by tw_*_new/_load/_generate are owned by the caller
 *     and released with the matching tw_*_free, which accepts NULL.
 *   - Strings returned by accessors are owned by the object and live as long
 *     as it does.
 *
 * Threads (each type's section says more):
 *   - tw_config: one thread at a time; tw_server_new, tw_server_reload and
 *     tw_client_new read it, so it must not change while they run.
 *   - tw_server: tw_server_accept, tw_server_reload and the tw_server_*
 *     getters may be called from any threads at once.  The configuration
 *     in use is a generation, taken under a short lock and reference-counted
 *     with atomics; a reload swaps in a new one while connections keep the
 *     one they were accepted under.
 *   - tw_client: tw_client_connect from any threads at once (a lock guards
 *     the session it resumes).
 *   - tw_conn: one thread at a time (it may move from thread to thread);
 *     distinct connections are independent.
 *   - tw_cert, tw_identity, tw_trust, and a tw_policy once its rules are
 *     added: never changed by the calls that take them const, so any
 *     number of threads may read one at the same time.
 *   - tw_err: the caller's; give each thread its own.
 *   - An object is freed by one thread, once no other uses it; a server or
 *     client only after the connections made from it are freed.
 */
#ifndef TWOWAY_H
#define TWOWAY_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The API version: the project's version (CMakeLists.txt, project()).
 * MINOR grows when calls are added, MAJOR when a call, type or enum value
 * changes or goes away (while MAJOR is 0, MINOR does both), PATCH for
 * fixes that change no declaration.  TW_VERSION_NUMBER compares as a
 * number: #if TW_VERSION_NUMBER >= 0x000100.
 */
#define TW_VERSION_MAJOR 0
#define TW_VERSION_MINOR 1
#define TW_VERSION_PATCH 0
#define TW_VERSION_NUMBER                                                     \
    ((TW_VERSION_MAJOR << 16) | (TW_VERSION_MINOR << 8) | TW_VERSION_PATCH)

/* TW_API marks what the shared library exports (it is built with hidden
 * visibility).  TW_MUST_CHECK makes the compiler warn when a result that
 * says whether the call worked, or that must be freed, is dropped. */
#if defined(__GNUC__)
#define TW_API __attribute__((visibility("default")))
#define TW_MUST_CHECK __attribute__((warn_unused_result))
#else
#define TW_API
#define TW_MUST_CHECK
#endif

/* ---------------------------------------------------------------- errors */

/* What kind of failure: the caller branches on this. */
enum tw_error_class {
    TW_ERR_NONE = 0,
    TW_ERR_IO,            /* a file or socket could not be read or written */
    TW_ERR_CLOSED,        /* the peer closed the connection */
    TW_ERR_BLOCKED,       /* something is busy (a CA index locked by another
                             process): retry later */
    TW_ERR_PROTOCOL,      /* the peer spoke TLS or HTTP wrongly */
    TW_ERR_PEER_REJECTED, /* we refused the peer's certificate (reason;
                             policy_denied when it has no role) */
    TW_ERR_USAGE,         /* the caller asked for something invalid */
    TW_ERR_INPUT,         /* malformed input: PEM, subject, CSR, config */
    TW_ERR_INTERNAL,      /* out of memory or an unexpected library failure */
    TW_ERR_REJECTED_BY_PEER /* the peer refused us with a TLS alert
                               (tw_err.reason says which check) */
};
/* Non-blocking I/O that would block is not an error: it returns
 * TW_WANT_READ / TW_WANT_WRITE (see the connections). */

/* Why a certificate was refused.  Names are stable: they appear in logs. */
enum tw_reason {
    TW_REASON_NONE = 0,
    TW_REASON_NO_CERTIFICATE, /* "no_certificate" */
    TW_REASON_UNKNOWN_CA,     /* "unknown_ca" */
    TW_REASON_EXPIRED,        /* "expired" */
    TW_REASON_NOT_YET_VALID,  /* "not_yet_valid" */
    TW_REASON_REVOKED,        /* "revoked" */
    TW_REASON_WRONG_USAGE,    /* "wrong_usage" */
    TW_REASON_NAME_MISMATCH,  /* "name_mismatch" */
    TW_REASON_POLICY_DENIED,  /* "policy_denied" */
    TW_REASON_BAD_CERTIFICATE,/* "bad_certificate": weak key, bad signature */
    TW_REASON_PROTOCOL,       /* "protocol" */
    TW_REASON_CRL_UNUSABLE    /* "crl_unusable": CRL expired or unreadable */
};

#define TW_ERR_MSG_MAX 768

typedef struct tw_err {
    enum tw_error_class cls;
    enum tw_reason reason;
    char msg[TW_ERR_MSG_MAX];
} tw_err;

/* Reset `err` to "no error". */
TW_API void tw_err_clear(tw_err *err);

/* Stable lower-case names: "io", "peer_rejected", ...; "unknown_ca", ... */
TW_API const char *tw_error_class_name(enum tw_error_class cls);
TW_API const char *tw_reason_name(enum tw_reason reason);

/* The name of a TLS alert (RFC 8446 section 6.2) by its code:
 * "unknown_ca" for 48, "certificate_revoked" for 44; "unknown_alert". */
TW_API const char *tw_tls_alert_name(int code);

/* --------------------------------------------------------- certificates */

typedef struct tw_cert tw_cert;

/* Read the first certificate of a PEM file.  Garbage or truncated PEM is
 * TW_ERR_INPUT naming the file. */
TW_API tw_cert *tw_cert_load_file(const char *path, tw_err *err) TW_MUST_CHECK;

/* Parse a certificate from PEM or DER bytes. */
TW_API tw_cert *tw_cert_parse(const void *data, size_t len,
                              tw_err *err) TW_MUST_CHECK;

TW_API void tw_cert_free(tw_cert *cert);

/* Purposes: what a certificate may be used for (extendedKeyUsage). */
#define TW_PURPOSE_SERVER 0x1 /* serverAuth */
#define TW_PURPOSE_CLIENT 0x2 /* clientAuth */
#define TW_PURPOSE_CA     0x4 /* a CA certificate (basicConstraints CA:TRUE) */

/* Subject alternative name types. */
enum tw_san_type { TW_SAN_DNS = 0, TW_SAN_IP, TW_SAN_URI, TW_SAN_EMAIL,
                   TW_SAN_TYPES };

/* ------------------------------------------------------------- identity */

/*
 * Identity: what a certificate says about its holder, parsed.  Policy and
 * logs use these fields, never the subject as one string.  Never changed
 * once made: any number of threads may read one at the same time.
 */
typedef struct tw_identity tw_identity;

TW_API tw_identity *tw_identity_from_cert(const tw_cert *cert,
                                          tw_err *err) TW_MUST_CHECK;
/* Parse identity from DER bytes (fuzzing, raw peer certificates). */
TW_API tw_identity *tw_identity_from_der(const void *der, size_t len,
                                         tw_err *err) TW_MUST_CHECK;
TW_API void tw_identity_free(tw_identity *id);

/* Subject and issuer in the `-subj` form ("/O=ABC Inc./CN=localhost"). */
TW_API const char *tw_identity_subject(const tw_identity *id);
TW_API const char *tw_identity_issuer(const tw_identity *id);
/* Serial as upper-case hex without separators ("0" for serial 0). */
TW_API const char *tw_identity_serial(const tw_identity *id);
/* SHA-256 of the DER certificate / of the DER SubjectPublicKeyInfo, as 64
 * lower-case hex digits. */
TW_API const char *tw_identity_fingerprint(const tw_identity *id);
TW_API const char *tw_identity_spki(const tw_identity *id);
/* Number of subject attributes named `field` ("CN", "O", "OU", ...) and the
 * idx-th of them (UTF-8), or NULL. */
TW_API size_t tw_identity_field_count(const tw_identity *id, const char *field);
TW_API const char *tw_identity_field(const tw_identity *id, const char *field,
                                     size_t idx);
/* SANs of one type: count, and the idx-th (IP as text, e.g. "127.0.0.1"). */
TW_API size_t tw_identity_san_count(const tw_identity *id,
                                    enum tw_san_type type);
TW_API const char *tw_identity_san(const tw_identity *id,
                                   enum tw_san_type type, size_t idx);
/* The SPIFFE ID: the one URI SAN with scheme "spiffe", or NULL. */
TW_API const char *tw_identity_spiffe_id(const tw_identity *id);
/* TW_PURPOSE_* flags from extendedKeyUsage and basicConstraints.  A
 * certificate with no EKU (X.509 v1) reports SERVER|CLIENT. */
TW_API int tw_identity_purposes(const tw_identity *id);
/* 1 for X.509 v1, 3 for v3. */
TW_API int tw_identity_version(const tw_identity *id);
TW_API time_t tw_identity_not_before(const tw_identity *id);
TW_API time_t tw_identity_not_after(const tw_identity *id);
/* Key description ("EC P-256") and signature algorithm ("ecdsa-with-SHA256"). */
TW_API const char *tw_identity_key_type(const tw_identity *id);
TW_API const char *tw_identity_signature_algorithm(const tw_identity *id);

/* --------------------------------------------------------- verification */

/*
 * Trust: the CA certificates (trust anchors) and optionally a CRL.  Chains
 * are checked at OpenSSL security level 2 (RSA >= 2048 bits, no SHA-1).
 * Several threads may verify against one tw_trust at the same time.
 */
typedef struct tw_trust tw_trust;

/* Load `ca_path` (PEM, one or more CA certificates) and, when `crl_path` is
 * not NULL, their CRLs (as tw_config_set_crl_file). */
TW_API tw_trust *tw_trust_load(const char *ca_path, const char *crl_path,
                               tw_err *err) TW_MUST_CHECK;
TW_API void tw_trust_free(tw_trust *trust);

/*
 * Verify `cert` for `purpose` (TW_PURPOSE_SERVER or TW_PURPOSE_CLIENT, or 0
 * for any) and,
 * when `host` is not NULL, that it names `host` (DNS SAN or IP SAN; CN only
 * when the certificate has no SAN at all, as v1 certificates do).
 * Returns 0 when it would be accepted; -1 with err->cls ==
 * TW_ERR_PEER_REJECTED, err->reason and a sentence naming the certificate
 * (subject, issuer, serial) and the fix.
 */
TW_API int tw_trust_verify(const tw_trust *trust, const tw_cert *cert,
                           int purpose, const char *host,
                           tw_err *err) TW_MUST_CHECK;

/* --------------------------------------------------- refusals explained */

/*
 * The reasons and sentences of libtwoway's own servers and clients, for a
 * program whose TLS another library drives (mail-server's libcurl): its
 * verify callback records what failed, these calls say it.  They keep no
 * state and may run in any thread.
 */

/*
 * The reason for an OpenSSL certificate verification error: an
 * X509_V_ERR_* code, as X509_STORE_CTX_get_error() or libcurl's
 * CURLINFO_SSL_VERIFYRESULT give it.  TW_REASON_NONE for 0 (X509_V_OK);
 * TW_REASON_BAD_CERTIFICATE for a code of no other class (a weak key or
 * digest, a bad signature, a malformed field).
 */
TW_API enum tw_reason tw_reason_from_verify_error(int x509_verify_error);

/*
 * Explain a certificate we refused: fill `err` with TW_ERR_PEER_REJECTED,
 * `reason` and a sentence saying which check failed, on which certificate
 * (subject, issuer, serial, and the date when a date is why) and what to
 * do.  `cert` is the certificate that failed, or NULL when none was
 * presented or it could not be read.  `whose` says whose it is ("the
 * client's", "the server's issuing CA's"; NULL: "the").  `detail` is, for
 * TW_REASON_NAME_MISMATCH, the host asked for; otherwise the checker's own
 * words (X509_verify_cert_error_string()) or NULL.  Returns -1, so that
 * callers may `return tw_explain_refusal(...)`; with a NULL `err` it only
 * returns -1.
 */
TW_API int tw_explain_refusal(tw_err *err, enum tw_reason reason,
                              const tw_identity *cert, const char *whose,
                              const char *detail);

/*
 * Whether TLS alert `alert` is the peer refusing our certificate
 * (bad_certificate, unsupported_certificate, certificate_revoked,
 * certificate_expired, certificate_unknown, unknown_ca, access_denied,
 * certificate_required: RFC 8446 section 6.2) rather than something else
 * of the handshake.
 */
TW_API int tw_tls_alert_refuses_certificate(int alert);

/*
 * Explain a fatal TLS alert the peer sent us during the handshake (RFC 8446
 * section 6.2): fill `err` with TW_ERR_REJECTED_BY_PEER, the reason the
 * alert stands for (TW_REASON_PROTOCOL when it is not about a certificate)
 * and a sentence: who refused, the alert, what it says about our
 * certificate and what to do.  `purpose` is our side: TW_PURPOSE_CLIENT
 * when we connected, TW_PURPOSE_SERVER when we accepted.  `own` is the
 * certificate we sent (NULL: none); `own_file`, when not NULL, is the file
 * it came from and is named in the sentence; `peer` names the other side
 * ("the invoice server"; NULL: "the server" or "the client", by `purpose`).
 * Returns -1, as tw_explain_refusal.
 */
TW_API int tw_explain_alert(tw_err *err, int alert, int purpose,
                            const tw_identity *own, const char *own_file,
                            const char *peer);

/* --------------------------------------------------------------- policy */

/*
 * Authorization policy: rules that give roles to identities.  One rule per
 * line:  ROLE FIELD=VALUE [FIELD=VALUE...]   (every field of a line must
 * match).  Fields: CN=, O=, OU= (any of the subject's values of that
 * attribute, exact and case-sensitive), dns= (case-insensitive; "*." as the
 * first label matches exactly one label), uri= ("*" matches one whole path
 * segment: "spiffe://abc.example/svc/ *" without the space), email= (domain case-insensitive),
 * ip= (IPv4 or IPv6, compared as addresses), sha256= (certificate
 * fingerprint) and spki= (public key pin), both 64 hex digits, case and ':'
 * ignored.  A value with spaces is double-quoted (O="ABC Inc.", \" and \\
 * escape inside quotes); '#' starts a comment outside quotes.  Rules are
 * matched against the parsed identity, never against the subject as text:
 * a CN whose text is "O=MailServer" does not satisfy O=MailServer.
 *
 * An expectation (a client's check of its server, `--expect-server`) is the
 * same line without the role.
 *
 * Threads: rules are added by one thread, before the policy is shared;
 * after that any number of threads may call tw_policy_allows and
 * tw_policy_roles at the same time.
 */
typedef struct tw_policy tw_policy;

TW_API tw_policy *tw_policy_new(tw_err *err) TW_MUST_CHECK;
TW_API void tw_policy_free(tw_policy *p);
/* Add one rule ("read O=MailServer").  Errors say what and where. */
TW_API int tw_policy_add_rule(tw_policy *p, const char *line,
                              tw_err *err) TW_MUST_CHECK;
/* Add an expectation: a rule without a role ("O=InvoiceServer"). */
TW_API int tw_policy_add_expectation(tw_policy *p, const char *line,
                                     tw_err *err) TW_MUST_CHECK;
/* Add every rule of a policy file; errors name FILE:LINE. */
TW_API int tw_policy_load_file(tw_policy *p, const char *path,
                               tw_err *err) TW_MUST_CHECK;
TW_API size_t tw_policy_rule_count(const tw_policy *p);
/*
 * Whether `id` has `role` (any rule's role when `role` is NULL: used for
 * expectations).  1 yes, 0 no.  When yes and `why` is not NULL, *why is the
 * text of the first rule that matched, normalised ("read O=MailServer"),
 * owned by the policy.
 */
TW_API int tw_policy_allows(const tw_policy *p, const tw_identity *id,
                            const char *role, const char **why);
/* The roles `id` has, each once, in rule order, separated by ',' ("read,
 * metrics"), into buf (always NUL-terminated).  Returns how many. */
TW_API size_t tw_policy_roles(const tw_policy *p, const tw_identity *id,
                              char *buf, size_t len);
/*
 * The roles the policy's rules give, each once, in the order of the first
 * rule that gives it: the role at `index` (from 0), or NULL past the last.
 * When not NULL, *rule gets that first rule, normalised ("read
 * O=MailServer"), and *where where it came from: "FILE:LINE" for a rule of
 * a policy file, NULL for one added as a string.  A server checks with it
 * that each role is one it knows: a misspelt role gives no one anything.
 * The strings belong to the policy.
 */
TW_API const char *tw_policy_role(const tw_policy *p, size_t index,
                                  const char **rule, const char **where);

/* --------------------------------------------------------------- config */

/*
 * A configuration: file names and settings, checked when set, read when a
 * server or client is built from it (tw_server_new, tw_client_new) and
 * read again on every reload.  Strict defaults: TLS 1.2 minimum, TLS 1.3
 * preferred, OpenSSL security level 2, peer certificates required and
 * verified (tw_config_set_client_cert), no renegotiation, no compression.
 * A config copies every string it is given; it may be freed once the
 * servers and clients built from it are built (they keep what they need).
 * Errors are read with tw_config_error().  One thread at a time: do not
 * change a config while tw_server_new, tw_server_reload or tw_client_new
 * reads it.
 */
typedef struct tw_config tw_config;

/* Protocol versions for tw_config_set_protocols. */
#define TW_TLS_1_2 0x0303
#define TW_TLS_1_3 0x0304

TW_API tw_config *tw_config_new(void) TW_MUST_CHECK;
TW_API void tw_config_free(tw_config *cfg);
/* The last error of a setter, as a sentence, and its class. */
TW_API const char *tw_config_error(const tw_config *cfg);
TW_API enum tw_error_class tw_config_error_class(const tw_config *cfg);

/* The trust anchors: a PEM file of CA certificates.  Required. */
TW_API int tw_config_set_ca_file(tw_config *cfg, const char *path) TW_MUST_CHECK;
/* The CRLs of those CAs: one (PEM or DER) or several (PEM, one per CA, one
 * after another); each must be signed by a CA of the CA file, and no CA may
 * have two.  With CRLs, a certificate whose issuer has none is refused
 * (crl_unusable), as one whose issuer's CRL is past its nextUpdate.  NULL for
 * none. */
TW_API int tw_config_set_crl_file(tw_config *cfg, const char *path) TW_MUST_CHECK;
/* Server: refuse, as revoked, the certificate whose SHA-256 fingerprint is
 * `sha256` (64 hex digits, colons allowed, any case): a revocation learned
 * before its CRL is published (invoice-server --revocations).  Refused at
 * the handshake (alert certificate_revoked), on resumption (a full
 * handshake instead) and, after tw_server_reload with a config that has
 * it, by open connections at their next tw_conn_refresh.  Adding the same
 * fingerprint twice keeps one.  Anything but a fingerprint is
 * TW_ERR_USAGE. */
TW_API int tw_config_add_revoked_fingerprint(tw_config *cfg,
                                             const char *sha256) TW_MUST_CHECK;
/* Our certificate (PEM, optionally followed by intermediates) and key. */
TW_API int tw_config_set_keypair_file(tw_config *cfg, const char *cert_path,
                                      const char *key_path) TW_MUST_CHECK;
/* Protocol bounds: TW_TLS_1_2 <= min <= max <= TW_TLS_1_3. */
TW_API int tw_config_set_protocols(tw_config *cfg, int min,
                                   int max) TW_MUST_CHECK;
/* Authorization: add one policy rule ("read O=MailServer"), or every rule
 * of a file (re-read on reload).  With neither, a server lets every
 * verified peer have every role (the seed's behaviour). */
TW_API int tw_config_add_policy_rule(tw_config *cfg,
                                     const char *rule) TW_MUST_CHECK;
TW_API int tw_config_set_policy_file(tw_config *cfg,
                                     const char *path) TW_MUST_CHECK;
/* Add to `p` the policy a server built from `cfg` now would have: the
 * rules of its policy file (read now), then those added one by one; none
 * when it has no policy.  All or nothing; errors as tw_policy_load_file
 * and tw_policy_add_rule.  To check a configuration before using it
 * (tw_policy_role), e.g. before a reload. */
TW_API int tw_policy_load_config(tw_policy *p, const tw_config *cfg,
                                 tw_err *err) TW_MUST_CHECK;
/* Client: what the server's identity must match ("O=InvoiceServer"),
 * besides being issued by the CA and naming the host. */
TW_API int tw_config_add_expectation(tw_config *cfg,
                                     const char *rule) TW_MUST_CHECK;
/* Server: TLS session ticket keys shared by several instances (re-read on
 * reload).  One key per line, 160 hex digits: a 16-byte name, a 32-byte
 * AES-256 key and a 32-byte HMAC-SHA256 key.  The first line's key makes
 * new tickets; every line's key is accepted, so keys can be rotated by
 * prepending a new line and later dropping the oldest.  Without a file,
 * the server draws a random key when built, kept across reloads. */
TW_API int tw_config_set_ticket_keys_file(tw_config *cfg,
                                          const char *path) TW_MUST_CHECK;
/* Server: the same keys from memory (from a database that several
 * instances share): `n` keys of TW_TICKET_KEY_BYTES each, laid out as a
 * file's lines (name, AES key, HMAC key), the first making new tickets.
 * Copied, and wiped when the config is freed; replaces a keys file, as a
 * keys file replaces these.  1 to 16 keys, else TW_ERR_USAGE. */
#define TW_TICKET_KEY_BYTES 80
TW_API int tw_config_set_ticket_keys(tw_config *cfg, const unsigned char *keys,
                                     size_t n) TW_MUST_CHECK;
/* Read a ticket keys file (the format above) into `keys`, room for `max`
 * keys of TW_TICKET_KEY_BYTES; their count in *n.  For a program that
 * derives other keys from it (wipe `keys` after use).  0, or -1 with err
 * naming the file and line. */
TW_API int tw_ticket_keys_read(const char *path, unsigned char *keys,
                               size_t max, size_t *n,
                               tw_err *err) TW_MUST_CHECK;
/* Server: how many TLS 1.3 tickets to send after a full handshake (default
 * 1; 0 disables resumption). */
TW_API int tw_config_set_tickets(tw_config *cfg, int count) TW_MUST_CHECK;
/*
 * Server: the most memory, in bytes, the session cache may hold (default
 * 10 MiB; 0 turns it off, and then sessions are not resumed by session id
 * or TLS 1.3 stateful ticket).  The cache is charged what it holds: about
 * 0.4 KiB per stored session, and each client's certificate once (about
 * 6 KiB with ECDSA P-256, 8.3 KiB with RSA-4096) while any of its sessions
 * or connections uses it.  A session is kept until the session lifetime
 * (one hour) ends or newer sessions need the room, oldest first.
 * The cache is per generation: a reload starts an empty one.  With a ticket
 * keys file, sessions live in tickets and this cache is not used.  Sizes
 * from 1 to 16383 are refused (TW_ERR_USAGE).
 */
TW_API int tw_config_set_session_cache_size(tw_config *cfg,
                                            size_t bytes) TW_MUST_CHECK;

/* Modes for tw_config_set_client_cert. */
#define TW_CLIENT_CERT_REQUIRED 0
#define TW_CLIENT_CERT_OPTIONAL 1
/* Added to either mode: accept a client certificate whatever purposes its
 * extendedKeyUsage names (a CA whose services renew server certificates
 * over mutual TLS); every other check stays. */
#define TW_CLIENT_CERT_ANY_PURPOSE 0x10
/*
 * Server: what a client certificate is to the handshake.
 * TW_CLIENT_CERT_REQUIRED (the default): one must be presented and pass
 * verification, or the handshake fails with a TLS alert.
 * TW_CLIENT_CERT_OPTIONAL: one is asked for, and one that is presented is
 * verified with every check REQUIRED makes (chain to the CA file, dates,
 * CRL, purpose clientAuth), but a missing certificate or a failed check
 * does not fail the handshake: the connection is made, the peer is
 * unverified, and each request decides (tw_conn_peer_verified says why
 * not; tw_conn_allows and tw_conn_roles grant an unverified peer nothing).
 * For servers whose routes answer a refusal themselves (an expired client
 * hears "expired" in an HTTP 403, not a TLS alert).  The proof that the
 * client holds its certificate's key (the CertificateVerify signature) is
 * still required in both modes: a client that cannot give it gets no
 * connection.  Clients ignore this setting.  Any other mode is
 * TW_ERR_USAGE.  With TW_CLIENT_CERT_ANY_PURPOSE added, the purpose
 * clientAuth is not required.
 */
TW_API int tw_config_set_client_cert(tw_config *cfg, int mode) TW_MUST_CHECK;

/* -------------------------------------------------------- connections */

/* Non-blocking I/O results (besides >= 0 and -1). */
#define TW_WANT_READ  (-2)
#define TW_WANT_WRITE (-3)

typedef struct tw_server tw_server;
typedef struct tw_client tw_client;
typedef struct tw_conn tw_conn;

/*
 * A server built from a config: reads the CA, CRL, certificate, key,
 * policy and ticket keys now.  NULL with err set (naming the file) when any
 * of them is unusable.  Thread-safe: any threads may call tw_server_accept,
 * tw_server_reload and the tw_server_* getters at the same time (each takes
 * the current generation under a short lock; a generation is
 * reference-counted with atomics and freed by whoever drops the last
 * reference).  Free the server after every connection it accepted.
 */
TW_API tw_server *tw_server_new(const tw_config *cfg, tw_err *err) TW_MUST_CHECK;
/*
 * Build a new generation from `cfg` (files read again) and make it the one
 * new connections get; connections already open keep theirs.  On failure
 * nothing changes and err says why.
 */
TW_API int tw_server_reload(tw_server *srv, const tw_config *cfg,
                            tw_err *err) TW_MUST_CHECK;
/* Generation counter: 1 after tw_server_new, +1 per successful reload. */
TW_API unsigned tw_server_generation(const tw_server *srv);
/* Whether the current generation has a policy (rules), for start-up
 * warnings ("any certificate the CA signed may read"). */
TW_API int tw_server_has_policy(const tw_server *srv);
/* The current generation's certificate expiry and the earliest nextUpdate of
 * its CRLs, for metrics (0 when there is no CRL). */
TW_API time_t tw_server_cert_not_after(const tw_server *srv);
TW_API time_t tw_server_crl_next_update(const tw_server *srv);
/* The current generation's session cache, for metrics: the bytes it holds
 * (sessions, bookkeeping and its table; 0 when off) and how many sessions
 * (expired ones not counted). */
TW_API size_t tw_server_session_cache_bytes(const tw_server *srv);
TW_API size_t tw_server_session_cache_count(const tw_server *srv);
TW_API void tw_server_free(tw_server *srv);

/* Take a connected socket (non-blocking or blocking); the connection does
 * not own fd: the caller closes it after tw_conn_free. */
TW_API tw_conn *tw_server_accept(tw_server *srv, int fd,
                                 tw_err *err) TW_MUST_CHECK;

/* A client built from a config (trust, own certificate, expectations).
 * Any threads may call tw_client_connect on one client at the same time;
 * free it after every connection it made. */
TW_API tw_client *tw_client_new(const tw_config *cfg, tw_err *err) TW_MUST_CHECK;
TW_API void tw_client_free(tw_client *cli);
/* Start a connection on a connected socket; `host` is sent as SNI and
 * checked against the server's certificate (NULL: no name check). */
TW_API tw_conn *tw_client_connect(tw_client *cli, int fd, const char *host,
                                  tw_err *err) TW_MUST_CHECK;

/*
 * A connection is used by one thread at a time (it may move between
 * threads: accepted on one, served on another); connections do not share
 * mutable state, so distinct ones run in parallel.
 *
 * Drive the handshake: 0 when done (peer verified; on a server with
 * TW_CLIENT_CERT_OPTIONAL, see tw_conn_peer_verified), TW_WANT_READ /
 * TW_WANT_WRITE to be called again when the fd is ready, -1 when it failed:
 * tw_conn_err() then has the class (TW_ERR_PEER_REJECTED with a reason
 * when we refused the peer's certificate, TW_ERR_REJECTED_BY_PEER with a
 * reason when the peer's alert refused ours).
 */
TW_API int tw_conn_handshake(tw_conn *c) TW_MUST_CHECK;
/* Read/write application data: bytes, 0 on a clean close (read), TW_WANT_*,
 * or -1 (tw_conn_err). */
TW_API long tw_conn_read(tw_conn *c, void *buf, size_t len) TW_MUST_CHECK;
TW_API long tw_conn_write(tw_conn *c, const void *buf,
                          size_t len) TW_MUST_CHECK;
/* Nonzero when tw_conn_read() has data without the socket becoming
 * readable: the bytes already decrypted, or 1 when a received record waits
 * undecrypted in the connection's buffer.  Check it (or read until
 * TW_WANT_READ) before waiting on the socket. */
TW_API size_t tw_conn_pending(const tw_conn *c);
/* Send close_notify: 0 done, TW_WANT_*, -1. */
TW_API int tw_conn_shutdown(tw_conn *c);
/* Free the connection (not the fd). */
TW_API void tw_conn_free(tw_conn *c);

TW_API const tw_err *tw_conn_err(const tw_conn *c);
/* The peer's identity after the handshake (NULL before, when it presented
 * no certificate, or when out of memory).  On a server with
 * TW_CLIENT_CERT_OPTIONAL this is the certificate presented even when it
 * failed verification (so that a refusal can name it): ask
 * tw_conn_peer_verified before trusting it.  Parsed from the certificate on
 * the first call and kept until tw_conn_free: connections nobody asks
 * about do not hold it. */
TW_API const tw_identity *tw_conn_peer(tw_conn *c) TW_MUST_CHECK;
/*
 * Whether the peer presented a certificate that passed verification: 1
 * yes; 0 no, and then `err` (may be NULL) holds the refusal a handshake
 * would have given: TW_ERR_PEER_REJECTED with TW_REASON_NO_CERTIFICATE
 * when none was presented, else the reason and sentence of the check that
 * failed (revoked, expired, unknown_ca, wrong_usage, ...), naming the
 * certificate.  Without a certificate verified there are no roles.  With
 * TW_CLIENT_CERT_REQUIRED (and on clients) it is 1 after a successful
 * handshake, until a tw_conn_refresh finds that the peer no longer passes.
 * 0 with TW_ERR_USAGE before the handshake is done.
 */
TW_API int tw_conn_peer_verified(const tw_conn *c, tw_err *err) TW_MUST_CHECK;
/*
 * Server connections: when the server was reloaded since this connection
 * began, check the peer's certificate again under the current CA, CRL,
 * expiry and purpose, and apply the current policy from now on.  Cheap when
 * nothing changed (call it before each request).  0 when the peer still
 * passes; -1 with tw_conn_err() (TW_ERR_PEER_REJECTED and a reason) when it
 * no longer does: answer with a refusal and close.  With
 * TW_CLIENT_CERT_OPTIONAL a failed check is no error of the connection: it
 * returns 0 and the peer is unverified from now on (tw_conn_peer_verified
 * says why), or verified again if it passes now; -1 only when out of
 * memory.
 */
TW_API int tw_conn_refresh(tw_conn *c) TW_MUST_CHECK;
/* After a handshake that failed because we refused the peer's certificate
 * (or, with TW_CLIENT_CERT_OPTIONAL, a connection whose peer is unverified
 * because a check failed): the certificate that failed (the client's, or
 * an issuing CA's it sent), as a new identity the caller frees; NULL when
 * the peer sent none or the failure was something else. */
TW_API tw_identity *tw_conn_refused_identity(const tw_conn *c) TW_MUST_CHECK;
/* Policy of the connection's generation: as tw_policy_allows.  With no
 * policy configured every verified peer has every role, *why = "no policy".
 * A peer that is not verified (tw_conn_peer_verified) has no role, policy
 * or not. */
TW_API int tw_conn_allows(const tw_conn *c, const char *role, const char **why);
/* The roles granted to the peer, as tw_policy_roles ("*" for every role
 * when there is no policy; none to a peer that is not verified). */
TW_API size_t tw_conn_roles(const tw_conn *c, char *buf, size_t len);
/* "TLSv1.3", "TLSv1.2". */
TW_API const char *tw_conn_version(const tw_conn *c);
/* Whether the session was resumed. */
TW_API int tw_conn_resumed(const tw_conn *c);
/* Server: nonzero when the client's first bytes were those of a plain
 * HTTP/1 request (an upper-case method and a space, or upper-case letters
 * only, so far), which never begin TLS: the handshake fails, or waits for
 * nothing.  The caller may answer in plain text; the bytes were read. */
TW_API int tw_conn_plain_http(const tw_conn *c);
/* The generation the connection was accepted under. */
TW_API unsigned tw_conn_generation(const tw_conn *c);

#ifdef __cplusplus
}
#endif

#endif /* TWOWAY_H */
