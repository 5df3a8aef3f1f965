/*
 * img — private helpers shared by the module's sources and its tests (not a public API).
 */
#ifndef VULTUS_IMG_PRIVATE_H
#define VULTUS_IMG_PRIVATE_H

#include "img/img.h"

#include <stddef.h>
#include <stdint.h>

/*
 * EXIF orientation readers. Every input is untrusted: each reader is bounds-checked, never
 * reads outside [data, data + len), and returns the orientation 1..8, or 1 when there is no
 * EXIF, no orientation tag, or anything about it is malformed or out of range.
 */
/* A TIFF structure ("II*\0" or "MM\0*", optionally preceded by "Exif\0\0"): IFD0 tag 0x0112. */
int img_exif_orientation_tiff(const uint8_t *data, size_t len);
/* A JPEG file: the first APP1 "Exif" segment before the first scan that holds a valid
 * orientation (a malformed one before it is skipped). */
int img_exif_orientation_jpeg(const uint8_t *data, size_t len);
/* A PNG file: the first eXIf chunk whose CRC is right, with or without the "Exif\0\0" prefix
 * (which libspng refuses). */
int img_exif_orientation_png(const uint8_t *data, size_t len);
/* A WebP file: the "EXIF" chunk of an extended (VP8X) RIFF container. */
int img_exif_orientation_webp(const uint8_t *data, size_t len);

/* The limits with zero fields replaced by the defaults documented in img.h. */
img_limits img_limits_resolve(const img_limits *limits);

/*
 * The instruction sets of img's SIMD kernels (the affine warp), for tests and benchmarks that
 * compare each variant with the scalar one in the same run. AUTO: the best this CPU has.
 */
typedef enum img_isa {
    IMG_ISA_AUTO = 0,
    IMG_ISA_SCALAR,
    IMG_ISA_AVX2,
    IMG_ISA_AVX512,     /* AVX512F + AVX512BW */
    IMG_ISA_AVX512VBMI, /* and AVX512VBMI: fewer gathered elements */
} img_isa;

/* 1 when this CPU (and this build) can run `isa`. */
int img_isa_supported(img_isa isa);
const char *img_isa_name(img_isa isa);

/* img_warp_affine() with a chosen variant; BASE_ERR_UNSUPPORTED when the CPU lacks it. Every
 * variant's output is bit-identical to the scalar one's. */
int img_warp_affine_isa(const img_image *src, const float m[6], int out_w, int out_h,
                        uint8_t border, img_image *out, img_isa isa);

#endif
