/*
 * renew_loop.c - renewal_test.py's tool for the crash test: renew the pair
 * CERT/KEY from twoway-ca serve again and again (each a new key, a request
 * and the two renames of libtwoway's renewal) until killed; or, with
 * `recover`, do what every start does first (tw_renewal_prepare).
 *
 *     renew_loop loop CERT KEY CA URL
 *     renew_loop recover CERT KEY CA
 */
#include "renew_internal.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    tw_renewal_options o = {0};
    char serial[64];
    tw_err err;

    if (argc < 5 || (strcmp(argv[1], "loop") == 0 && argc != 6) ||
        (strcmp(argv[1], "loop") != 0 && strcmp(argv[1], "recover") != 0)) {
        fprintf(stderr, "usage: renew_loop loop CERT KEY CA URL | "
                        "renew_loop recover CERT KEY CA\n");
        return 2;
    }
    o.cert_file = argv[2];
    o.key_file = argv[3];
    o.ca_file = argv[4];
    o.user_agent = "renew_loop";
    if (strcmp(argv[1], "recover") == 0) {
        if (tw_renewal_prepare(&o, &err) < 0) {
            fprintf(stderr, "renew_loop: %s\n", err.msg);
            return 1;
        }
        return 0;
    }
    o.renew_url = argv[5];
    for (unsigned long n = 1;; n++) {
        if (tw__renew_cert(&o, NULL, NULL, serial, sizeof(serial), &err) < 0) {
            fprintf(stderr, "renew_loop: %s\n", err.msg);
            return 1;
        }
        printf("renewed %lu %s\n", n, serial);
        fflush(stdout);
    }
}
