/* key_test.c - private keys: every type generates, PKCS#8 files round-trip,
 * encrypted files open only with their passphrase, files are 0600. */
#include "tw_internal.h"
#include "unit_helpers.h"

static int setup(void **state)
{
    *state = th_mkdtemp();
    return 0;
}

static int teardown(void **state)
{
    th_rmdir(*state);
    return 0;
}

static const struct {
    const char *type, *desc;
} all_types[] = {
    {"ec-p256", "EC P-256"},   {"ec-p384", "EC P-384"},
    {"ed25519", "Ed25519"},    {"rsa-2048", "RSA 2048"},
    {"rsa-3072", "RSA 3072"},  {"rsa-4096", "RSA 4096"},
};

static void every_type_generates_and_writes_and_loads(void **state)
{
    const char *dir = *state;

    for (size_t i = 0; i < sizeof(all_types) / sizeof(all_types[0]); i++) {
        char path[4096];
        tw_err err;
        tw_key *key, *back;

        assert_true(tw_key_type_valid(all_types[i].type));
        key = th_key(all_types[i].type);
        assert_string_equal(tw_key_describe(key), all_types[i].desc);
        th_path(path, dir, all_types[i].type);
        assert_int_equal(tw_key_write_file(key, path, NULL, &err), 0);
        assert_int_equal(th_mode(path), 0600);
        back = tw_key_load_file(path, NULL, &err);
        if (back == NULL)
            fail_msg("%s: %s", all_types[i].type, err.msg);
        assert_int_equal(EVP_PKEY_eq(key->pkey, back->pkey), 1);
        assert_string_equal(tw_key_describe(back), all_types[i].desc);
        tw_key_free(back);
        tw_key_free(key);
    }
}

static void default_type_is_p256(void **state)
{
    tw_key *key = th_key(NULL);

    (void)state;
    assert_string_equal(tw_key_describe(key), "EC P-256");
    tw_key_free(key);
}

static void unknown_type_is_usage(void **state)
{
    tw_err err;

    (void)state;
    assert_null(tw_key_generate("dsa-1024", &err));
    th_assert_err(err, TW_ERR_USAGE,
                  "unknown key type 'dsa-1024': use ec-p256, ec-p384, "
                  "ed25519, rsa-2048, rsa-3072 or rsa-4096");
    assert_null(tw_key_generate("EC-P256", &err)); /* names are exact */
    assert_int_equal(err.cls, TW_ERR_USAGE);
    assert_false(tw_key_type_valid("dsa-1024"));
    assert_false(tw_key_type_valid(""));
    assert_false(tw_key_type_valid(NULL));
}

static void plain_file_is_pkcs8_0600_even_with_umask_0(void **state)
{
    const char *dir = *state;
    char path[4096], *pem;
    tw_key *key = th_key("ec-p256");
    mode_t old = umask(0);
    tw_err err;
    int rc;

    th_path(path, dir, "key.pem");
    rc = tw_key_write_file(key, path, NULL, &err);
    umask(old);
    assert_int_equal(rc, 0);
    assert_int_equal(th_mode(path), 0600);
    pem = th_slurp(path, NULL);
    assert_int_equal(strncmp(pem, "-----BEGIN PRIVATE KEY-----\n", 28), 0);
    free(pem);
    assert_int_equal(tw_key_file_is_encrypted(path, &err), 0);
    assert_int_equal(th_dir_entries(dir), 1);
    tw_key_free(key);
}

static void encrypted_file_opens_only_with_its_passphrase(void **state)
{
    const char *dir = *state;
    char path[4096], expected[4400], *pem;
    tw_key *key = th_key("ec-p384"), *back;
    tw_err err;

    th_path(path, dir, "enc.pem");
    assert_int_equal(tw_key_write_file(key, path, "correct horse", &err), 0);
    assert_int_equal(th_mode(path), 0600);
    pem = th_slurp(path, NULL);
    assert_non_null(strstr(pem, "-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    assert_null(strstr(pem, "-----BEGIN PRIVATE KEY-----"));
    free(pem);
    assert_int_equal(tw_key_file_is_encrypted(path, &err), 1);

    back = tw_key_load_file(path, "correct horse", &err);
    assert_non_null(back);
    assert_int_equal(EVP_PKEY_eq(key->pkey, back->pkey), 1);
    tw_key_free(back);

    assert_null(tw_key_load_file(path, "battery staple", &err));
    snprintf(expected, sizeof(expected), "wrong passphrase for %s: the key "
             "cannot be decrypted with it", path); /* OpenSSL's words not */
    th_assert_err(err, TW_ERR_USAGE, expected);

    assert_null(tw_key_load_file(path, "", &err));
    th_assert_err_prefix(err, TW_ERR_USAGE, expected);

    assert_null(tw_key_load_file(path, NULL, &err));
    snprintf(expected, sizeof(expected),
             "the private key %s is encrypted: give its passphrase", path);
    th_assert_err(err, TW_ERR_USAGE, expected);
    assert_int_equal(ERR_peek_error(), 0);
    tw_key_free(key);
}

static void a_passphrase_on_a_plain_key_is_harmless(void **state)
{
    const char *dir = *state;
    char path[4096];
    tw_key *key = th_key("ed25519"), *back;
    tw_err err;

    th_path(path, dir, "plain.pem");
    assert_int_equal(tw_key_write_file(key, path, NULL, &err), 0);
    back = tw_key_load_file(path, "unused", &err);
    assert_non_null(back);
    assert_int_equal(EVP_PKEY_eq(key->pkey, back->pkey), 1);
    tw_key_free(back);
    tw_key_free(key);
}

static void legacy_encrypted_pem_is_recognised(void **state)
{
    const char *dir = *state;
    char path[4096], expected[4400];
    tw_key *key = th_key("rsa-2048"), *back;
    BIO *bio;
    tw_err err;

    /* The traditional form: "Proc-Type: 4,ENCRYPTED" headers. */
    th_path(path, dir, "legacy.pem");
    bio = BIO_new_file(path, "w");
    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PrivateKey_traditional(
                         bio, key->pkey, EVP_aes_256_cbc(),
                         (unsigned char *)"pw", 2, NULL, NULL), 1);
    BIO_free(bio);
    assert_int_equal(tw_key_file_is_encrypted(path, &err), 1);
    assert_null(tw_key_load_file(path, NULL, &err));
    snprintf(expected, sizeof(expected),
             "the private key %s is encrypted: give its passphrase", path);
    th_assert_err(err, TW_ERR_USAGE, expected);
    back = tw_key_load_file(path, "pw", &err);
    assert_non_null(back);
    assert_int_equal(EVP_PKEY_eq(key->pkey, back->pkey), 1);
    tw_key_free(back);
    assert_null(tw_key_load_file(path, "nope", &err));
    snprintf(expected, sizeof(expected), "wrong passphrase for %s: the key "
             "cannot be decrypted with it", path); /* OpenSSL's words not */
    th_assert_err(err, TW_ERR_USAGE, expected);
    tw_key_free(key);
}

/* Bug: a passphrase longer than PEM_BUFSIZE (1024) wrote a key that no
 * passphrase could open again: reading hands the callback 1024 bytes. */
static void a_passphrase_too_long_to_read_back_is_refused(void **state)
{
    const char *dir = *state;
    char path[4096], pass[1026] = {0};
    tw_key *key = th_key("ec-p256"), *back;
    tw_err err;

    memset(pass, 'p', 1024); /* 1024 bytes: the most that reads back */
    th_path(path, dir, "longest.pem");
    assert_int_equal(tw_key_write_file(key, path, pass, &err), 0);
    back = tw_key_load_file(path, pass, &err);
    assert_non_null(back);
    tw_key_free(back);

    pass[1024] = 'p'; /* 1025 bytes */
    th_path(path, dir, "too-long.pem");
    assert_int_equal(tw_key_write_file(key, path, pass, &err), -1);
    th_assert_err(err, TW_ERR_USAGE, "the passphrase is longer than 1024 bytes");
    assert_false(th_exists(path));
    tw_key_free(key);
}

static void never_replaces_an_existing_file(void **state)
{
    const char *dir = *state;
    char path[4096], expected[4200], *back;
    tw_key *key = th_key("ec-p256");
    tw_err err;

    th_path(path, dir, "key.pem");
    th_write(path, "precious", 8);
    assert_int_equal(tw_key_write_file(key, path, NULL, &err), -1);
    snprintf(expected, sizeof(expected),
             "%s already exists: not replacing it", path);
    th_assert_err(err, TW_ERR_IO, expected);
    back = th_slurp(path, NULL);
    assert_string_equal(back, "precious");
    free(back);
    assert_int_equal(th_dir_entries(dir), 1);
    tw_key_free(key);
}

static void garbage_is_input_naming_the_file(void **state)
{
    const char *dir = *state;
    char path[4096], expected[4200];
    tw_err err;

    th_path(path, dir, "garbage.pem");
    th_write(path, "this is not a key\n", 18);
    assert_null(tw_key_load_file(path, NULL, &err));
    snprintf(expected, sizeof(expected),
             "%s is not a PEM private key (no -----BEGIN line)", path);
    th_assert_err_prefix(err, TW_ERR_INPUT, expected);

    th_write(path, "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
             58);
    assert_null(tw_key_load_file(path, NULL, &err));
    snprintf(expected, sizeof(expected),
             "%s holds no readable private key (garbage or truncated PEM?)",
             path);
    th_assert_err_prefix(err, TW_ERR_INPUT, expected);

    th_write(path, "", 0);
    assert_null(tw_key_load_file(path, NULL, &err));
    snprintf(expected, sizeof(expected),
             "%s is not a PEM private key (no -----BEGIN line)", path);
    th_assert_err_prefix(err, TW_ERR_INPUT, expected);
    assert_int_equal(ERR_peek_error(), 0);
}

static void truncated_pem_is_input(void **state)
{
    const char *dir = *state;
    char path[4096], cut[4096], expected[4200], *pem;
    tw_key *key = th_key("rsa-2048");
    size_t len;
    tw_err err;

    th_path(path, dir, "key.pem");
    assert_int_equal(tw_key_write_file(key, path, NULL, &err), 0);
    pem = th_slurp(path, &len);
    th_path(cut, dir, "cut.pem");
    th_write(cut, pem, len / 2);
    assert_null(tw_key_load_file(cut, NULL, &err));
    snprintf(expected, sizeof(expected),
             "%s holds no readable private key (garbage or truncated PEM?)",
             cut);
    th_assert_err_prefix(err, TW_ERR_INPUT, expected);
    /* Without its END line. */
    th_write(cut, pem, len - 20);
    assert_null(tw_key_load_file(cut, NULL, &err));
    th_assert_err_prefix(err, TW_ERR_INPUT, expected);
    free(pem);
    tw_key_free(key);
}

static void a_certificate_is_not_a_key(void **state)
{
    const char *dir = *state;
    char path[4096], expected[4200];
    tw_key *key = th_key("ec-p256");
    tw_cert *ca = th_ca("/CN=CA", key);
    tw_err err;

    th_path(path, dir, "ca.pem");
    assert_int_equal(tw_cert_write_file(ca, path, &err), 0);
    assert_null(tw_key_load_file(path, NULL, &err));
    snprintf(expected, sizeof(expected),
             "%s holds no readable private key (garbage or truncated PEM?)",
             path);
    th_assert_err_prefix(err, TW_ERR_INPUT, expected);
    tw_cert_free(ca);
    tw_key_free(key);
}

static void missing_and_oversized_files(void **state)
{
    const char *dir = *state;
    char path[4096], expected[4200], *big;
    tw_err err;

    th_path(path, dir, "absent.pem");
    assert_null(tw_key_load_file(path, NULL, &err));
    snprintf(expected, sizeof(expected),
             "cannot read %s: No such file or directory", path);
    th_assert_err(err, TW_ERR_IO, expected);
    assert_int_equal(tw_key_file_is_encrypted(path, &err), -1);
    th_assert_err(err, TW_ERR_IO, expected);

    th_path(path, dir, "big.pem");
    big = calloc(1, 64 * 1024 + 1);
    assert_non_null(big);
    memset(big, 'A', 64 * 1024 + 1);
    th_write(path, big, 64 * 1024 + 1);
    free(big);
    assert_null(tw_key_load_file(path, NULL, &err));
    snprintf(expected, sizeof(expected),
             "%s is larger than 65536 bytes: is it the right file?", path);
    th_assert_err(err, TW_ERR_INPUT, expected);
}

struct io_ctx {
    char path[4096];
    const char *pass;
};

static int load_once(void *ctx, tw_err *err)
{
    struct io_ctx *c = ctx;
    tw_key *key = tw_key_load_file(c->path, c->pass, err);

    tw_key_free(key);
    return key ? 0 : -1;
}

static int generate_once(void *ctx, tw_err *err)
{
    tw_key *key = tw_key_generate(ctx, err);

    tw_key_free(key);
    return key ? 0 : -1;
}

static void allocation_failures_are_internal(void **state)
{
    const char *dir = *state;
    struct io_ctx c;
    tw_key *key = th_key("ec-p256");
    tw_err err;

    th_path(c.path, dir, "enc.pem");
    c.pass = "pw";
    assert_int_equal(tw_key_write_file(key, c.path, c.pass, &err), 0);
    th_alloc_fail_loop(load_once, &c);
    th_alloc_fail_loop(generate_once, "ed25519");
    tw_key_free(key);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(every_type_generates_and_writes_and_loads),
        cmocka_unit_test(default_type_is_p256),
        cmocka_unit_test(unknown_type_is_usage),
        T(plain_file_is_pkcs8_0600_even_with_umask_0),
        T(encrypted_file_opens_only_with_its_passphrase),
        T(a_passphrase_on_a_plain_key_is_harmless),
        T(legacy_encrypted_pem_is_recognised),
        T(a_passphrase_too_long_to_read_back_is_refused),
        T(never_replaces_an_existing_file),
        T(garbage_is_input_naming_the_file),
        T(truncated_pem_is_input),
        T(a_certificate_is_not_a_key),
        T(missing_and_oversized_files),
        T(allocation_failures_are_internal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
