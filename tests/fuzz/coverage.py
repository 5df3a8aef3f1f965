#!/usr/bin/env python3
"""Which fuzz target reaches which parser, and how much of it: builds the library and every
target with clang's source-based coverage (-fprofile-instr-generate -fcoverage-mapping, no
sanitizers) into BUILD/fuzzcov, runs each target once over its corpus (libFuzzer -runs=0:
every input once, nothing mutated), and prints docs/fuzzing.md's table: for each parser
function, the targets that reach it and the best one's share of its lines. Not part of the
build; from the repository root:

    python3 tests/fuzz/coverage.py [--build build] [--corpus DIR ...] [--only NAME ...]
                                   [--show FUNCTION]

Each --corpus DIR holds one folder per target (DIR/NAME or DIR/corpus-NAME), read besides
tests/fuzz/corpus/NAME: pass a long run's output folders to see what it reached. --only
runs those targets alone (fuzz_server replays slowly: it waits 250 ms for each answer). --show
prints a function's source with its execution counts (llvm-cov show), the lines no input
reached marked 0.
"""
import argparse
import glob
import os
import re
import subprocess
import sys

PKGS = "jansson sqlite3 libpq libturbojpeg spng libwebp libmicrohttpd".split()

# (what it reads, file, function): every function that parses bytes or text a client, a file
# or the environment controls. Static functions are named as in the source.
PARSERS = [
    ("Authorization, X-Request-Id, Content-Length, X-Request-Deadline-Ms", "src/http/server.c", "on_headers"),
    ("X-Request-Id's characters", "src/http/server.c", "valid_request_id"),
    ("request body and its limit", "src/http/server.c", "append_body"),
    ("client text in error messages made UTF-8", "src/http/server.c", "utf8_sanitize"),
    ("UTF-8 sequences", "src/base/base.c", "base_utf8_seq"),
    ("API key token", "src/http/keys.c", "http_keystore_check"),
    ("Idempotency-Key claim", "src/http/keys.c", "http_idem_begin"),
    ("key text or id (keys revoke)", "src/http/keys.c", "http_key_id_parse"),
    ("scope name", "src/http/keys.c", "http_scope_parse"),
    ("path against a route, captures", "src/http/routes.c", "match_pattern"),
    ("method and path", "src/http/routes.c", "http_route_match"),
    ("percent-decoding", "src/http/codec.c", "http_percent_decode"),
    ("query string", "src/http/codec.c", "http_query_get"),
    ("base64 images, data URLs", "src/http/codec.c", "http_base64_decode"),
    ("Content-Type's media type", "src/http/input.c", "media_type"),
    ("body by Content-Type (JSON, multipart, raw)", "src/http/input.c", "http_input_parse"),
    ("image lookup (base64, part, raw body)", "src/http/input.c", "http_input_image"),
    ("parameters (query, JSON, form fields)", "src/http/input.c", "http_input_param"),
    ("integer parameters", "src/http/input.c", "http_input_int"),
    ("number parameters", "src/http/input.c", "http_input_float"),
    ("boolean parameters", "src/http/input.c", "http_input_bool"),
    ("JSON-valued parameters", "src/http/input.c", "http_input_json_value"),
    ("Content-Type boundary", "src/http/multipart.c", "http_multipart_boundary"),
    ("header parameters (name=, filename=)", "src/http/multipart.c", "header_param"),
    ("part headers", "src/http/multipart.c", "parse_part_headers"),
    ("multipart body", "src/http/multipart.c", "http_multipart_parse"),
    ("paging (limit, after)", "src/http/api_gallery.c", "page_params"),
    ("gallery routes' JSON body", "src/http/api_gallery.c", "json_input"),
    ("subject metadata", "src/http/api_gallery.c", "metadata_text"),
    ("face id in a path", "src/http/api_gallery.c", "parse_face_id"),
    ("enrolment parameters", "src/http/api_gallery.c", "enrol_params"),
    ("search parameters", "src/http/api_gallery.c", "search_params"),
    ("collection create body", "src/http/api_gallery.c", "http_api_collection_create"),
    ("collection update body", "src/http/api_gallery.c", "http_api_collection_update"),
    ("subject create body", "src/http/api_gallery.c", "http_api_subject_create"),
    ("subject update body", "src/http/api_gallery.c", "http_api_subject_update"),
    ("verify parameters", "src/http/api_face.c", "verify_params"),
    ("subject id check", "src/gallery/gallery.c", "gal_check_subject_id"),
    ("metadata JSON check", "src/gallery/gallery.c", "gal_check_metadata"),
    ("image format sniffing", "src/img/image.c", "img_detect_format"),
    ("image dimensions against limits", "src/img/decode.c", "check_size"),
    ("JPEG", "src/img/decode.c", "decode_jpeg"),
    ("PNG", "src/img/decode.c", "decode_png"),
    ("WebP", "src/img/decode.c", "decode_webp"),
    ("decoder entry, truncated signatures", "src/img/decode.c", "img_decode"),
    ("EXIF TIFF directory (orientation)", "src/img/exif.c", "img_exif_orientation_tiff"),
    ("JPEG APP1 segments", "src/img/exif.c", "img_exif_orientation_jpeg"),
    ("WebP RIFF chunks", "src/img/exif.c", "img_exif_orientation_webp"),
    ("gallery export file", "src/gallery/export.c", "parse"),
    ("export's face records", "src/gallery/export.c", "read_face"),
    ("export's strings", "src/gallery/export.c", "get_str"),
    ("PostgreSQL URL or file path", "src/gallery/store_postgres.c", "gal_location_is_url"),
    ("PostgreSQL URL shown in logs", "src/gallery/store_postgres.c", "gal_location_redact"),
    ("serve options (flags)", "src/http/config.c", "http_config_set"),
    ("options' integers", "src/http/config.c", "parse_long"),
    ("--listen [HOST]:PORT", "src/http/config.c", "parse_listen"),
    ("VULTUS_* environment", "src/http/config.c", "http_config_from_env"),
    ("model.json", "src/nn/model.c", "nn_model_load_tfjs_mem"),
    ("weights manifest", "src/nn/weights.c", "nn_weights_from_manifest"),
    ("weight data (dtypes, quantisation)", "src/nn/weights.c", "decode_weight"),
    ("shard paths", "src/nn/weights.c", "safe_shard_path"),
    ("graph nodes", "src/nn/import_tfjs.c", "parse_nodes"),
    ("node ops and attributes", "src/nn/import_tfjs.c", "import_node"),
    ("base64 in attributes", "src/nn/import_tfjs.c", "b64_decode"),
    ("eval lfw: LFW pair files", "src/cli/eval_input.c", "eval_parse_lfw_pairs"),
    ("eval pairs: pair lists", "src/cli/eval_input.c", "eval_parse_pair_list"),
    ("eval wider: WIDER FACE ground truth", "src/cli/eval_input.c", "eval_parse_wider_gt"),
    ("eval's lines split into fields", "src/cli/eval_input.c", "split_fields"),
    ("eval's integer fields", "src/cli/eval_input.c", "parse_long"),
    ("eval's number fields", "src/cli/eval_input.c", "parse_float"),
    ("eval age: UTKFace file names", "src/cli/eval_input.c", "eval_parse_utk_name"),
    ("eval --limit on pairs", "src/cli/eval_input.c", "eval_limit_pairs"),
    ("eval's integer options", "src/cli/eval_input.c", "eval_parse_long_option"),
    ("eval --min-score", "src/cli/eval_input.c", "eval_parse_score_option"),
]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def pkg(flag):
    return subprocess.run(["pkg-config", flag] + PKGS, capture_output=True, text=True,
                          check=True).stdout.split()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--corpus", action="append", default=[])
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--show")
    ap.add_argument("--jobs", default="2")
    a = ap.parse_args()
    out = os.path.join(a.build, "fuzzcov")
    flags = "-fprofile-instr-generate -fcoverage-mapping"
    run(["make", "--no-print-directory", "-j" + a.jobs, f"BUILD={out}", "CC=clang", "CXX=clang++",
         "OPT=-O0", f"EXTRA_CFLAGS={flags}", f"{out}/libvultus.a"], stdout=subprocess.DEVNULL)
    names = sorted(os.path.basename(p)[5:-2] for p in glob.glob("tests/fuzz/fuzz_*.c"))
    names = [n for n in names if not a.only or n in a.only]
    os.makedirs(f"{out}/bin", exist_ok=True)
    for name in names:
        binary, src = f"{out}/bin/fuzz_{name}", f"tests/fuzz/fuzz_{name}.c"
        if not os.path.exists(binary) or os.path.getmtime(binary) < max(
                os.path.getmtime(src), os.path.getmtime(f"{out}/libvultus.a")):
            run(["clang", "-std=c17", "-D_GNU_SOURCE", "-O0", "-g", "-fsanitize=fuzzer"] +
                flags.split() + ["-Isrc"] + pkg("--cflags") + ["-o", binary, src,
                f"{out}/libvultus.a"] + pkg("--libs") +
                ["-lXNNPACK", "-lpthreadpool", "-lm", "-lstdc++", "-pthread"])
        dirs = [f"tests/fuzz/corpus/{name}"]
        for c in a.corpus:
            dirs += [d for d in (f"{c}/{name}", f"{c}/corpus-{name}") if os.path.isdir(d)]
        raw = f"{out}/{name}.profraw"
        if os.path.exists(raw):
            os.remove(raw)
        # A replay that fails leaves no profile (the table shows its target reaching nothing);
        # the failing input goes to BUILD/fuzzcov, not into the working directory.
        subprocess.run([binary, "-runs=0", "-rss_limit_mb=4096", f"-artifact_prefix={out}/"] + dirs,
                       env=dict(os.environ, LLVM_PROFILE_FILE=raw),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run(["llvm-profdata", "merge", "-sparse", raw, "-o", f"{out}/{name}.profdata"])

    if a.show:
        for f in sorted({f for _, f, fn in PARSERS if fn == a.show}):
            for name in names:
                show = subprocess.run(["llvm-cov", "show", f"{out}/bin/fuzz_{name}",
                                       "-instr-profile", f"{out}/{name}.profdata",
                                       f"-name-regex=^(.*:)?{a.show}$", f],
                                      capture_output=True, text=True).stdout
                if re.search(r"^\s+\d+\|\s+[1-9]", show, re.M):
                    print(f"== fuzz_{name}\n{show}")
        return

    files = sorted({f for _, f, _ in PARSERS})
    cov = {}  # (file, function) -> {target: (lines, missed)}
    for name in names:
        report = subprocess.run(["llvm-cov", "report", "-show-functions",
                                 f"{out}/bin/fuzz_{name}", "-instr-profile",
                                 f"{out}/{name}.profdata"] + files,
                                capture_output=True, text=True).stdout
        current = None
        for line in report.splitlines():
            m = re.match(r"File '(?:.*/)?(src/.*)':", line)
            if m:
                current = m.group(1)
                continue
            cols = line.split()
            if current and len(cols) >= 7 and cols[1].isdigit() and cols[4].isdigit():
                fn = cols[0].split(":")[-1]
                cov.setdefault((current, fn), {})[name] = (int(cols[4]), int(cols[5]))
    print("| parser | file:function | targets reaching it | lines covered |")
    print("|---|---|---|---|")
    for what, f, fn in PARSERS:
        reach = sorted(((100.0 * (n - m) / n, t) for t, (n, m) in cov.get((f, fn), {}).items()
                        if n > m), reverse=True)
        targets = ", ".join(t for _, t in reach) or "none"
        best = f"{reach[0][0]:.0f}% ({reach[0][1]})" if reach else "0%"
        print(f"| {what} | `{f}:{fn}` | {targets} | {best} |")


if __name__ == "__main__":
    sys.exit(main())
