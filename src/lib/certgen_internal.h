/* certgen_internal.h - what csr.c needs of a certificate template. */
#ifndef TW_CERTGEN_INTERNAL_H
#define TW_CERTGEN_INTERNAL_H

#include "tw_internal.h"

#include <openssl/x509v3.h>

/* Add a copy of a GENERAL_NAME to the SANs. */
int tw__certgen_add_general_name(tw_certgen *g, const GENERAL_NAME *gn,
                                 tw_err *err);
/* Take ownership of `pub` / `name`, replacing what was set. */
int tw__certgen_set_pkey(tw_certgen *g, EVP_PKEY *pub);
int tw__certgen_set_subject_name(tw_certgen *g, X509_NAME *name);

#endif
