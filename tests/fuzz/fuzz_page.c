/* fuzz_page.c - mail-server's parser of the invoice server's answers
 * (GET /invoices pages, untrusted JSON from the network), and the mail
 * built from each invoice that passes: headers must stay headers. */
#include "mail.h"
#include "sync.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mail_page page;
    mail_err e;
    mail_sender from = {.name = "ABC Inc. Billing", .addr = "billing@abc.example"};

    if (mail_page_parse(&page, (const char *)data, size,
                        "https://localhost:3100/invoices", &e) < 0)
        return 0;
    for (size_t i = 0; i < page.count; i++) {
        mail_invoice inv;
        char why[256], id[512], *msg;
        size_t len;

        if (mail_page_invoice(&page, i, &inv, why, sizeof(why)) < 0)
            continue;
        if (mail_message_id(inv.number, "localhost", id, sizeof(id)) < 0)
            continue;
        if ((msg = mail_render(&inv, &from, id, 1764400000, &len)) == NULL)
            continue;
        /* No bare CR or LF: a name must never start a new header. */
        for (size_t j = 0; j < len; j++)
            if ((msg[j] == '\r' && (j + 1 == len || msg[j + 1] != '\n')) ||
                (msg[j] == '\n' && (j == 0 || msg[j - 1] != '\r')))
                abort();
        free(msg);
    }
    mail_page_free(&page);
    return 0;
}
