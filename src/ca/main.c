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
    "`twoway-ca help COMMAND` (or `twoway-ca COMMAND --help`) shows a\n"
    "command's options; see twoway-ca(1).\n";

static const struct command {
    const char *name;
    int (*run)(int, char **);
} commands[] = {
    {"init", cmd_init},     {"issue", cmd_issue}, {"sign", cmd_sign},
    {"revoke", cmd_revoke}, {"crl", cmd_crl},     {"list", cmd_list},
    {"inspect", cmd_inspect}, {"verify", cmd_verify}, {"token", cmd_token},
    {"serve", cmd_serve},
};

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(name, commands[i].name) == 0)
            return &commands[i];
    return NULL;
}

/* `twoway-ca help COMMAND`: what `twoway-ca COMMAND --help` prints. */
static int command_help(int argc, char **argv)
{
    static char help_option[] = "--help";
    const struct command *cmd = find_command(argv[2]);
    char *args[] = {argv[2], help_option, NULL};

    if (argc > 3) {
        fprintf(stderr, "twoway-ca: help takes one command, as in "
                "`twoway-ca help issue`\n");
        return CA_EXIT_USAGE;
    }
    if (strcmp(argv[2], "help") == 0) {
        fputs(usage, stdout);
        return CA_EXIT_OK;
    }
    if (cmd == NULL) {
        fprintf(stderr, "twoway-ca: no command '%s' to help with (see "
                "`twoway-ca --help`)\n", argv[2]);
        return CA_EXIT_USAGE;
    }
    return cmd->run(2, args);
}

int main(int argc, char **argv)
{
    const struct command *cmd;

    if (argc < 2) {
        fputs(usage, stderr);
        return CA_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        (strcmp(argv[1], "help") == 0 && argc == 2)) {
        fputs(usage, stdout);
        return CA_EXIT_OK;
    }
    if (strcmp(argv[1], "help") == 0)
        return command_help(argc, argv);
    if (strcmp(argv[1], "--version") == 0) {
        printf("twoway-ca %s\n", TW_VERSION);
        return CA_EXIT_OK;
    }
    if ((cmd = find_command(argv[1])) != NULL)
        return cmd->run(argc - 1, argv + 1);
    fprintf(stderr, "twoway-ca: unknown command '%s' (see `twoway-ca --help`)\n",
            argv[1]);
    return CA_EXIT_USAGE;
}
