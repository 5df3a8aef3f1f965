/*
 * TF.js weights manifests: a JSON list of groups, each naming its binary shards and the
 * weights packed into them, in order. Dequantisation follows tfjs-core's decodeWeights
 * exactly (uint8/uint16: q * scale + min computed in double and stored as float32; float16
 * decoded bit-exactly), so our weights are the very floats TF.js computes with.
 */
#include "nn/weights.h"

#include "base/base.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NN_DEFAULT_MAX_FILE_BYTES ((size_t)256 << 20)
#define NN_MAX_WEIGHTS 100000

void nn_weights_destroy(nn_weights *w)
{
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->items[i].name);
        base_aligned_free(w->items[i].data);
    }
    free(w->items);
    free(w);
}

const nn_weight *nn_weights_find(const nn_weights *w, const char *name)
{
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->items[i].name, name) == 0) return &w->items[i];
    return NULL;
}

const float *nn_weights_get(const nn_weights *w, const char *name, int *rank, int64_t *dims)
{
    const nn_weight *it = nn_weights_find(w, name);
    if (!it || it->dtype != NN_DTYPE_F32) return NULL;
    if (rank) *rank = it->rank;
    if (dims)
        for (int i = 0; i < it->rank; i++)
            dims[i] = it->dims[i];
    return it->data;
}

static int dtype_size(const char *dt)
{
    if (!strcmp(dt, "float32") || !strcmp(dt, "int32")) return 4;
    if (!strcmp(dt, "uint16") || !strcmp(dt, "float16")) return 2;
    if (!strcmp(dt, "uint8") || !strcmp(dt, "bool")) return 1;
    return 0;
}

/* A shard path must stay inside the model's folder. */
static int safe_shard_path(const char *p)
{
    if (!*p || p[0] == '/' || strstr(p, "..") || strchr(p, '\\')) return 0;
    return 1;
}

static int decode_weight(const char *name, json_t *spec, const uint8_t *bytes, size_t avail,
                         size_t *used, nn_weight *out)
{
    json_t *shape = json_object_get(spec, "shape");
    const char *dtype = json_string_value(json_object_get(spec, "dtype"));
    if (!json_is_array(shape) || !dtype)
        return base_error_set(BASE_ERR_FORMAT, "weight %s: missing shape or dtype", name);
    if (json_array_size(shape) > NN_MAX_DIMS)
        return base_error_set(BASE_ERR_UNSUPPORTED, "weight %s: rank %zu", name,
                              json_array_size(shape));
    memset(out, 0, sizeof *out);
    out->rank = (int)json_array_size(shape);
    size_t count = 1;
    for (int i = 0; i < out->rank; i++) {
        json_t *d = json_array_get(shape, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0 || json_integer_value(d) > (1 << 26))
            return base_error_set(BASE_ERR_FORMAT, "weight %s: dimension %d is not a sane size",
                                  name, i);
        out->dims[i] = json_integer_value(d);
        if (base_mul_size(count, (size_t)out->dims[i], &count) || count > ((size_t)1 << 28))
            return base_error_set(BASE_ERR_LIMIT, "weight %s: too many elements", name);
    }
    int is_f32 = !strcmp(dtype, "float32"), is_i32 = !strcmp(dtype, "int32");
    if (!is_f32 && !is_i32)
        return base_error_set(BASE_ERR_UNSUPPORTED, "weight %s: dtype %s", name, dtype);
    json_t *q = json_object_get(spec, "quantization");
    const char *qtype = q ? json_string_value(json_object_get(q, "dtype")) : NULL;
    if (q && !qtype)
        return base_error_set(BASE_ERR_FORMAT, "weight %s: quantization without dtype", name);
    int esize = dtype_size(qtype ? qtype : dtype);
    if (qtype && strcmp(qtype, "uint8") && strcmp(qtype, "uint16") && strcmp(qtype, "float16"))
        return base_error_set(BASE_ERR_UNSUPPORTED, "weight %s: quantization dtype %s", name,
                              qtype);
    size_t nbytes = count * (size_t)esize;
    if (nbytes > avail)
        return base_error_set(BASE_ERR_FORMAT,
                              "weight %s needs %zu bytes but the shards have only %zu left", name,
                              nbytes, avail);
    double scale = 1, minv = 0;
    if (qtype && strcmp(qtype, "float16") != 0) {
        json_t *s = json_object_get(q, "scale"), *m = json_object_get(q, "min");
        if (!json_is_number(s) || !json_is_number(m))
            return base_error_set(BASE_ERR_FORMAT, "weight %s: %s quantization needs scale and min",
                                  name, qtype);
        scale = json_number_value(s);
        minv = json_number_value(m);
    }
    out->data = base_aligned_alloc(64, count * 4 + 64);
    if (!out->data) return base_error_set(BASE_ERR_NOMEM, "weight %s: %zu elements", name, count);
    out->count = count;
    out->dtype = is_f32 ? NN_DTYPE_F32 : NN_DTYPE_I32;
    float *f = out->data;
    int32_t *iv = out->data;
    for (size_t i = 0; i < count; i++) {
        const uint8_t *b = bytes + i * (size_t)esize;
        if (!qtype) {
            memcpy(&f[i], b, 4); /* little-endian host; f32 and i32 alike */
        } else if (!strcmp(qtype, "float16")) {
            uint16_t h = (uint16_t)(b[0] | b[1] << 8);
            float v = base_f16_to_f32(h);
            if (is_f32)
                f[i] = v;
            else
                iv[i] = (int32_t)v;
        } else {
            double qv = !strcmp(qtype, "uint8") ? b[0] : (double)(b[0] | b[1] << 8);
            double v = qv * scale + minv;
            if (is_f32)
                f[i] = (float)v;
            else
                iv[i] = (int32_t)round(v);
        }
    }
    out->name = strdup(name);
    if (!out->name) {
        base_aligned_free(out->data);
        return base_error_set(BASE_ERR_NOMEM, "weight %s", name);
    }
    *used = nbytes;
    return 0;
}

int nn_weights_from_manifest(json_t *manifest, nn_shard_reader read_shard, void *user,
                             size_t max_bytes, nn_weights **out)
{
    *out = NULL;
    if (!json_is_array(manifest))
        return base_error_set(BASE_ERR_FORMAT, "weights manifest is not a JSON array");
    nn_weights *w = calloc(1, sizeof *w);
    if (!w) return base_error_set(BASE_ERR_NOMEM, "weights");
    int rc = 0;
    uint8_t *buf = NULL;
    size_t gi;
    json_t *group;
    json_array_foreach(manifest, gi, group)
    {
        json_t *paths = json_object_get(group, "paths"), *specs = json_object_get(group, "weights");
        if (!json_is_array(paths) || !json_is_array(specs)) {
            rc = base_error_set(BASE_ERR_FORMAT,
                                "weights manifest group %zu lacks paths or weights", gi);
            goto fail;
        }
        /* Concatenate the group's shards: weights may straddle shard boundaries. */
        size_t total = 0;
        free(buf);
        buf = NULL;
        size_t pi;
        json_t *pj;
        json_array_foreach(paths, pi, pj)
        {
            const char *p = json_string_value(pj);
            if (!p || !safe_shard_path(p)) {
                rc = base_error_set(BASE_ERR_FORMAT,
                                    "weights shard path %zu of group %zu is not a plain file name",
                                    pi, gi);
                goto fail;
            }
            char *data = NULL;
            size_t len = 0;
            rc = read_shard(user, p, max_bytes, &data, &len);
            if (rc) goto fail;
            size_t nt;
            if (base_add_size(total, len, &nt) || nt > max_bytes) {
                free(data);
                rc = base_error_set(BASE_ERR_LIMIT, "weights group %zu: shards exceed %zu bytes",
                                    gi, max_bytes);
                goto fail;
            }
            uint8_t *nb = realloc(buf, nt + 1);
            if (!nb) {
                free(data);
                rc = base_error_set(BASE_ERR_NOMEM, "weights group %zu: %zu bytes", gi, nt);
                goto fail;
            }
            buf = nb;
            memcpy(buf + total, data, len);
            total = nt;
            free(data);
        }
        size_t off = 0, si;
        json_t *spec;
        json_array_foreach(specs, si, spec)
        {
            const char *name = json_string_value(json_object_get(spec, "name"));
            if (!name) {
                rc = base_error_set(BASE_ERR_FORMAT, "weights group %zu: entry %zu has no name", gi,
                                    si);
                goto fail;
            }
            if (w->n >= NN_MAX_WEIGHTS) {
                rc =
                    base_error_set(BASE_ERR_LIMIT, "weights: more than %d entries", NN_MAX_WEIGHTS);
                goto fail;
            }
            nn_weight *items = realloc(w->items, (size_t)(w->n + 1) * sizeof *items);
            if (!items) {
                rc = base_error_set(BASE_ERR_NOMEM, "weights");
                goto fail;
            }
            w->items = items;
            size_t used = 0;
            rc = decode_weight(name, spec, buf ? buf + off : NULL, total - off, &used,
                               &w->items[w->n]);
            if (rc) goto fail;
            w->n++;
            off += used;
        }
        if (off != total) {
            rc = base_error_set(
                BASE_ERR_FORMAT,
                "weights group %zu: the manifest describes %zu bytes but the shards hold %zu", gi,
                off, total);
            goto fail;
        }
    }
    free(buf);
    *out = w;
    return 0;
fail:
    free(buf);
    nn_weights_destroy(w);
    return rc;
}

/* Shards live beside the manifest. */
typedef struct dir_reader {
    char dir[4096];
} dir_reader;

int nn_read_shard_from_dir(void *user, const char *path, size_t max_bytes, char **data, size_t *len)
{
    const dir_reader *d = user;
    char full[8192];
    snprintf(full, sizeof full, "%s%s", d->dir, path);
    return base_file_read(full, max_bytes, data, len);
}

void *nn_dir_reader_new(const char *file_path)
{
    dir_reader *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    const char *slash = strrchr(file_path, '/');
    size_t n = slash ? (size_t)(slash - file_path + 1) : 0;
    if (n >= sizeof d->dir) n = 0;
    memcpy(d->dir, file_path, n);
    d->dir[n] = '\0';
    return d;
}

int nn_weights_load_tfjs(const char *manifest_path, const nn_load_options *opts, nn_weights **out)
{
    *out = NULL;
    size_t max = opts && opts->max_file_bytes ? opts->max_file_bytes : NN_DEFAULT_MAX_FILE_BYTES;
    char *text = NULL;
    size_t len = 0;
    int rc = base_file_read(manifest_path, max, &text, &len);
    if (rc) return rc;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!root)
        return base_error_set(BASE_ERR_FORMAT, "%s: invalid JSON at line %d: %s", manifest_path,
                              jerr.line, jerr.text);
    json_t *manifest = json_is_object(root) ? json_object_get(root, "weightsManifest") : root;
    void *reader = nn_dir_reader_new(manifest_path);
    if (!reader) {
        json_decref(root);
        return base_error_set(BASE_ERR_NOMEM, "weights");
    }
    rc = nn_weights_from_manifest(manifest, nn_read_shard_from_dir, reader, max, out);
    free(reader);
    json_decref(root);
    return rc;
}
