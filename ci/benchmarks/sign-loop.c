/*
 * The reference the signing pool is measured against: what a C program does at best with
 * the same module, token, key and message size. One logged-in session per thread, the key's
 * handle found once per session, then C_SignInit + C_Sign (CKM_SHA256_RSA_PKCS) in a loop,
 * a one-second warm-up, then the measured window. Prints one JSON line.
 *
 *   sign-loop MODULE TOKEN_LABEL KEY_LABEL THREADS SECONDS MESSAGE_BYTES PIN_ENV_NAME
 *
 * The PIN is read from the environment variable named by PIN_ENV_NAME, never from argv.
 * Built by ci/bench with: cc -O2 -pthread $(pkg-config --cflags p11-kit-1) sign-loop.c -ldl
 */
#include <dlfcn.h>
#include <p11-kit/pkcs11.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static CK_FUNCTION_LIST_PTR p11;
static CK_SLOT_ID slot;
static const char *key_label;
static size_t message_bytes;
static double warm_until, stop_at;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void check(const char *what, CK_RV rv) {
    if (rv != CKR_OK) {
        fprintf(stderr, "sign-loop: %s: 0x%lx\n", what, (unsigned long)rv);
        exit(1);
    }
}

static void *worker(void *out) {
    CK_SESSION_HANDLE session;
    check("C_OpenSession", p11->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &session));
    CK_OBJECT_CLASS class = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE template[] = {
        {CKA_CLASS, &class, sizeof class},
        {CKA_LABEL, (void *)key_label, strlen(key_label)},
    };
    CK_OBJECT_HANDLE key;
    CK_ULONG found = 0;
    check("C_FindObjectsInit", p11->C_FindObjectsInit(session, template, 2));
    check("C_FindObjects", p11->C_FindObjects(session, &key, 1, &found));
    check("C_FindObjectsFinal", p11->C_FindObjectsFinal(session));
    if (found != 1) { fprintf(stderr, "sign-loop: key '%s' not found\n", key_label); exit(1); }

    unsigned char *message = malloc(message_bytes);
    for (size_t i = 0; i < message_bytes; i++) message[i] = (unsigned char)(i * 31 + 7);
    unsigned char signature[1024];
    CK_MECHANISM mechanism = {CKM_SHA256_RSA_PKCS, NULL, 0};
    long counted = 0;
    for (;;) {
        double t = now();
        if (t >= stop_at) break;
        check("C_SignInit", p11->C_SignInit(session, &mechanism, key));
        CK_ULONG length = sizeof signature;
        check("C_Sign", p11->C_Sign(session, message, message_bytes, signature, &length));
        if (t >= warm_until) counted++;
    }
    free(message);
    p11->C_CloseSession(session);
    *(long *)out = counted;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: sign-loop MODULE TOKEN_LABEL KEY_LABEL THREADS SECONDS MESSAGE_BYTES PIN_ENV_NAME\n");
        return 2;
    }
    const char *pin = getenv(argv[7]);
    if (!pin) { fprintf(stderr, "sign-loop: %s is not set\n", argv[7]); return 2; }
    key_label = argv[3];
    int threads = atoi(argv[4]);
    double seconds = atof(argv[5]);
    message_bytes = (size_t)atol(argv[6]);
    if (threads < 1 || threads > 256 || seconds <= 0 || message_bytes < 1) { fprintf(stderr, "sign-loop: bad arguments\n"); return 2; }

    void *module = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!module) { fprintf(stderr, "sign-loop: %s\n", dlerror()); return 1; }
    CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(module, "C_GetFunctionList");
    if (!get) { fprintf(stderr, "sign-loop: no C_GetFunctionList\n"); return 1; }
    check("C_GetFunctionList", get(&p11));
    CK_C_INITIALIZE_ARGS init = {0};
    init.flags = CKF_OS_LOCKING_OK;
    check("C_Initialize", p11->C_Initialize(&init));

    CK_ULONG count = 0;
    check("C_GetSlotList", p11->C_GetSlotList(CK_TRUE, NULL, &count));
    CK_SLOT_ID *slots = calloc(count ? count : 1, sizeof *slots);
    check("C_GetSlotList", p11->C_GetSlotList(CK_TRUE, slots, &count));
    char wanted[32];
    memset(wanted, ' ', sizeof wanted);
    memcpy(wanted, argv[2], strlen(argv[2]) < sizeof wanted ? strlen(argv[2]) : sizeof wanted);
    int found = 0;
    for (CK_ULONG i = 0; i < count && !found; i++) {
        CK_TOKEN_INFO info;
        if (p11->C_GetTokenInfo(slots[i], &info) == CKR_OK && memcmp(info.label, wanted, sizeof wanted) == 0) {
            slot = slots[i];
            found = 1;
        }
    }
    if (!found) { fprintf(stderr, "sign-loop: no token '%s'\n", argv[2]); return 1; }

    CK_SESSION_HANDLE login;
    check("C_OpenSession", p11->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &login));
    check("C_Login", p11->C_Login(login, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)));

    double start = now();
    warm_until = start + 1.0;
    stop_at = warm_until + seconds;
    pthread_t *ids = calloc((size_t)threads, sizeof *ids);
    long *counts = calloc((size_t)threads, sizeof *counts);
    for (int i = 0; i < threads; i++) pthread_create(&ids[i], NULL, worker, &counts[i]);
    long total = 0;
    for (int i = 0; i < threads; i++) { pthread_join(ids[i], NULL); total += counts[i]; }

    printf("{\"signaturesPerSecond\":%.2f,\"threads\":%d,\"signatures\":%ld,\"seconds\":%.2f,\"messageBytes\":%zu}\n",
           (double)total / seconds, threads, total, seconds, message_bytes);
    p11->C_Logout(login);
    p11->C_CloseSession(login);
    p11->C_Finalize(NULL);
    return 0;
}
