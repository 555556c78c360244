/*
 * client.c - tw_client: connections to servers, resuming the newest
 * session the server gave us.
 */
#include "tls_internal.h"

/* TLS 1.3 tickets arrive after the handshake: keep the newest one. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    tw_conn *c = SSL_get_ex_data(ssl, tw__ssl_conn_index());
    SSL_SESSION *old;

    if (c == NULL || c->client == NULL)
        return 0;
    pthread_mutex_lock(&c->client->lock);
    old = c->client->session;
    c->client->session = sess;
    pthread_mutex_unlock(&c->client->lock);
    SSL_SESSION_free(old);
    return 1; /* we keep the reference */
}

tw_client *tw_client_new(const tw_config *cfg, tw_err *err)
{
    tw_client *cli = twu_calloc(1, sizeof(*cli));

    if (cli == NULL) {
        twu_err_nomem(err);
        return NULL;
    }
    pthread_mutex_init(&cli->lock, NULL);
    if ((cli->gen = tw__gen_new(cfg, 0, NULL, 0, err)) == NULL) {
        tw_client_free(cli);
        return NULL;
    }
    cli->gen->id = 1;
    SSL_CTX_sess_set_new_cb(cli->gen->ctx, new_session_cb);
    return cli;
}

void tw_client_free(tw_client *cli)
{
    if (cli == NULL)
        return;
    SSL_SESSION_free(cli->session);
    tw__gen_unref(cli->gen);
    pthread_mutex_destroy(&cli->lock);
    twu_free(cli);
}

tw_conn *tw_client_connect(tw_client *cli, int fd, const char *host,
                           tw_err *err)
{
    tw_conn *c = tw__conn_new(tw__gen_ref(cli->gen), fd, 0, host, err);

    if (c == NULL)
        return NULL;
    c->client = cli;
    pthread_mutex_lock(&cli->lock);
    if (cli->session != NULL)
        SSL_set_session(c->ssl, cli->session);
    pthread_mutex_unlock(&cli->lock);
    return c;
}
