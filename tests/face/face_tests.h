/*
 * Shared by the face pipeline's tests: skipping a test, with a line saying why, when what it
 * needs is absent (the model pack and ../shared/data are optional on a user's machine).
 */
#ifndef VULTUS_TESTS_FACE_FACE_TESTS_H
#define VULTUS_TESTS_FACE_FACE_TESTS_H

#include <stdio.h>

/* Inside a cmocka test: skip it unless `present`, printing "skip: <why>". */
#define SKIP_UNLESS(present, why)                                                                  \
    do {                                                                                           \
        if (!(present)) {                                                                          \
            printf("skip: %s\n", why);                                                             \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

#endif
