/*
 * main.c - twoway-ca: the certificate authority of twoway.  Finds the
 * command and hands it the arguments; the commands live in cmd_*.c.
 */
#include "ca.h"

#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: twoway-ca COMMAND [OPTIONS]\n"
    "\n"
    "A certificate authority for mutual TLS.\n"
    "\n"
    "commands:\n"
    "  init DIR        create a CA in DIR (ca.cert.pem, ca.key.pem, ca.db)\n"
    "  issue           issue a key and certificate to a server or client\n"
    "  sign            sign a certificate signing request (CSR)\n"
    "  revoke          revoke a certificate by serial or file\n"
    "  crl             write a certificate revocation list\n"
    "  token           make a one-time enrolment token for twoway-ca serve\n"
    "  list            list every certificate the CA issued (or --tokens)\n"
    "  inspect FILE    show what a certificate says\n"
    "  verify          check a certificate as a server or client would\n"
    "  serve           the online CA: enrol, renew, revoke and the CRL over HTTPS\n"
    "\n"
    "`twoway-ca COMMAND --help` shows a command's options; see twoway-ca(1).\n";

static const struct command {
    const char *name;
    int (*run)(int, char **);
} commands[] = {
    {"init", cmd_init},     {"issue", cmd_issue}, {"sign", cmd_sign},
    {"revoke", cmd_revoke}, {"crl", cmd_crl},     {"list", cmd_list},
    {"inspect", cmd_inspect}, {"verify", cmd_verify}, {"token", cmd_token},
    {"serve", cmd_serve},
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return CA_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(usage, stdout);
        return CA_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("twoway-ca %s\n", TW_VERSION);
        return CA_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "twoway-ca: unknown command '%s' (see `twoway-ca --help`)\n",
            argv[1]);
    return CA_EXIT_USAGE;
}
