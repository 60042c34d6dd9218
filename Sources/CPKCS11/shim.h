#ifndef FIREBLOCKS_HSM_CPKCS11_SHIM_H
#define FIREBLOCKS_HSM_CPKCS11_SHIM_H

// The only C the project sees: PKCS#11 types and p11-kit's module loader and
// RFC 7512 URI parser. Imported by the PKCS11 target alone (`internal import`).
#include <p11-kit/pkcs11.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/uri.h>

#endif
