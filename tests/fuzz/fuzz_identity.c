/* fuzz_identity.c - identity extraction from arbitrary DER certificates:
 * every accessor must be safe on whatever parsed. */
#include "tw_internal.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tw_err err;
    tw_identity *id = tw_identity_from_der(data, size, &err);
    size_t total = 0;

    if (id == NULL)
        return 0;
    total += strlen(tw_identity_subject(id)) + strlen(tw_identity_issuer(id));
    total += strlen(tw_identity_serial(id)) + strlen(tw_identity_fingerprint(id));
    total += strlen(tw_identity_spki(id)) + strlen(tw_identity_key_type(id));
    total += strlen(tw_identity_signature_algorithm(id));
    for (int t = 0; t < TW_SAN_TYPES; t++)
        for (size_t i = 0; i < tw_identity_san_count(id, t); i++)
            total += strlen(tw_identity_san(id, t, i));
    for (size_t i = 0; i < tw_identity_field_count(id, "CN"); i++)
        total += strlen(tw_identity_field(id, "CN", i));
    if (tw_identity_spiffe_id(id) != NULL)
        total += strlen(tw_identity_spiffe_id(id));
    total += (size_t)tw_identity_purposes(id) + (size_t)tw_identity_version(id);
    tw_identity_free(id);
    return total == (size_t)-1;
}
