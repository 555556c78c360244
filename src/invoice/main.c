/*
 * main.c - invoice-server: the mTLS invoice API.  Parses the command line
 * and runs the server (run.c).
 */
#include "app.h"

int main(int argc, char **argv)
{
    inv_options o;
    int done, rc = inv_options_parse(&o, argc, argv, &done);

    if (done) {
        twu_conf_free(&o.conf);
        return rc;
    }
    rc = inv_run(&o);
    twu_conf_free(&o.conf);
    return rc;
}
