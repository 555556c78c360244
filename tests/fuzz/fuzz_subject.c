/* fuzz_subject.c - the `-subj` parser (CLI subject strings): never crash,
 * and whatever parses must print back to text that parses to the same. */
#include "tw_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    tw_name *name, *again;
    tw_err err;

    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    name = tw_name_parse(text, &err);
    if (name != NULL) {
        again = tw_name_parse(tw_name_text(name), &err);
        if (again == NULL || strcmp(tw_name_text(again), tw_name_text(name)))
            abort(); /* printing must round-trip */
        tw_name_free(again);
    }
    tw_name_free(name);
    free(text);
    return 0;
}
