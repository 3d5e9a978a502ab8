/* tokenizer.c - Hugging Face tokenizers in C: WordPiece (BERT) and byte-level BPE (RoBERTa).
 *
 * The pipeline is the one of the Rust `tokenizers` crate, stage by stage:
 *
 *   raw text -> added tokens matched on the raw text (normalized=false ones)
 *            -> normalizer (per remaining piece)
 *            -> added tokens matched on the normalized text (normalized=true ones)
 *            -> pre-tokenizer (BertPreTokenizer / ByteLevel / Whitespace[Split])
 *            -> model (WordPiece / BPE)
 *            -> offset trimming (ByteLevel or RobertaProcessing with trim_offsets)
 *
 * pd_tokenizer_assemble then adds the post-processor's special tokens.
 *
 * Offsets: the normalized text is kept as UTF-8 bytes, and each normalized byte carries the
 * byte range [s, e) of the ORIGINAL character it came from. A token spanning normalized bytes
 * [a, b) therefore has offsets [s(a), e(b-1)) in the caller's text, whatever the normalizer
 * did (lowercasing, NFD + accent removal, CJK spacing, control removal). As in the Rust
 * crate, a byte-level token holding only some bytes of a multi-byte character covers the
 * whole character (tokenizers' `offsets_when_char_split_up` test): offsets always fall on
 * character boundaries, so text[start..end) is valid UTF-8.
 *
 * Thread-safety: a loaded tokenizer is never written again; every tokenize call allocates
 * its own scratch (no cache, no globals). */
#include "tokenizer.h"

#include <cJSON.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>

#define MAX_ID (1 << 22)            /* ids from this on are treated as hostile (32 MB of tables) */
#define MAX_FILE ((size_t)1 << 30)  /* tokenizer.json / vocab.txt size limit */
#define NORM_MAX 32                 /* code points one input character may normalize to */
#define TPL_MAX 16                  /* pieces in a post-processor template */
#define TPL_IDS_MAX 64              /* special-token ids across both templates */
#define NORM_STEPS_MAX 16

/* ==== Unicode tables ==== */

/* The tables below are generated from Python 3.11's unicodedata (Unicode 14.0.0) by this
 * script; rerun it and paste its output to move to a newer Unicode version.
 *
 *   import unicodedata as u
 *   def cls(c):  # 0 other, 1 L*, 2 N*, 3 P*, 4 Mn, 5 Cc/Cf/Cs/Co/Cn
 *       g = u.category(chr(c))
 *       return {'L': 1, 'N': 2, 'P': 3, 'C': 5}.get(g[0], 4 if g == 'Mn' else 0)
 *   runs, prev = [], -1
 *   for c in range(0x110000):
 *       k = cls(c)
 *       if k != prev: runs.append((c << 3) | k); prev = k
 *   low = []  # (first, count, stride, delta) for one-to-one lowercase mappings
 *   for c in range(0x110000):
 *       l = chr(c).lower()
 *       if len(l) != 1 or ord(l) == c: continue
 *       d = ord(l) - c
 *       if low:
 *           s, n, st, dd = low[-1]
 *           if dd == d and ((n == 1 and c - s in (1, 2)) or (n > 1 and c == s + n * st)):
 *               low[-1] = (s, n + 1, c - s if n == 1 else st, d); continue
 *       low.append((c, 1, 1, d))
 *   dec = [(c, [ord(x) for x in u.normalize('NFD', chr(c))]) for c in range(0x110000)
 *          if not (0xAC00 <= c <= 0xD7A3 or 0xF900 <= c <= 0xFAFF or 0x2F800 <= c <= 0x2FA1F)]
 *   dec = [(c, d) for c, d in dec if d != [c]]
 *   tail = sorted({x for _, d in dec for x in d[1:]})
 *   nfd = []
 *   for c, d in dec:
 *       assert len(d) <= 4 and len(tail) < 127
 *       m = [tail.index(x) + 1 for x in d[1:]] + [0] * (4 - len(d))
 *       nfd.append(c << 42 | d[0] << 21 | m[0] << 14 | m[1] << 7 | m[2])
 *   # printed as uc_class_runs, uc_lower_runs, uc_nfd_tail and uc_nfd_table below
 *
 * Coverage and approximations (each also noted where it is used):
 * - Categories: exact for Unicode 14. The Rust crate takes them from the older
 *   `unicode_categories` crate, so characters assigned since then may classify differently.
 *   Unassigned code points (Cn) are "control", as in the Rust is_other(), so BertNormalizer's
 *   clean_text deletes them.
 * - Lowercase: every one-to-one mapping of str.lower(), plus U+0130 -> "i\u0307" (the only
 *   one-to-many lowercase mapping), which is what Rust's char::to_lowercase gives.
 * - NFD: every canonical decomposition of Unicode 14 (Latin, Greek, Cyrillic, kana voiced
 *   marks, Indic nukta forms, Hebrew presentation forms, ...) and Hangul syllables
 *   (algorithmic), except the CJK compatibility ideographs U+F900-FAFF and U+2F800-2FA1F,
 *   which would map to a single unified ideograph and are left as they are. Combining marks
 *   that follow a base character are not canonically reordered (it makes no difference once
 *   accents are stripped, the only use of NFD in BERT). */

enum { UC_OTHER = 0, UC_LETTER = 1, UC_NUMBER = 2, UC_PUNCT = 3, UC_MARK = 4, UC_CONTROL = 5 };

struct uc_lower_run {
    uint32_t first;
    uint16_t count, stride;
    int32_t delta;
};

/* Unicode 14.0.0: (first code point << 3) | class, one entry per run of equal class. */
static const uint32_t uc_class_runs[2429] = {
    0x5, 0x100, 0x10b, 0x120, 0x12b, 0x158, 0x163, 0x182, 0x1d3, 0x1e0,
    0x1fb, 0x209, 0x2db, 0x2f0, 0x2fb, 0x300, 0x309, 0x3db, 0x3e0, 0x3eb,
    0x3f0, 0x3fd, 0x500, 0x50b, 0x510, 0x53b, 0x540, 0x551, 0x55b, 0x560,
    0x56d, 0x570, 0x592, 0x5a0, 0x5a9, 0x5b3, 0x5c0, 0x5ca, 0x5d1, 0x5db,
    0x5e2, 0x5fb, 0x601, 0x6b8, 0x6c1, 0x7b8, 0x7c1, 0x1610, 0x1631, 0x1690,
    0x1701, 0x1728, 0x1761, 0x1768, 0x1771, 0x1778, 0x1804, 0x1b81, 0x1ba8, 0x1bb1,
    0x1bc5, 0x1bd1, 0x1bf3, 0x1bf9, 0x1c05, 0x1c20, 0x1c31, 0x1c3b, 0x1c41, 0x1c5d,
    0x1c61, 0x1c6d, 0x1c71, 0x1d15, 0x1d19, 0x1fb0, 0x1fb9, 0x2410, 0x241c, 0x2440,
    0x2451, 0x2985, 0x2989, 0x2abd, 0x2ac9, 0x2ad3, 0x2b01, 0x2c4b, 0x2c5d, 0x2c68,
    0x2c85, 0x2c8c, 0x2df3, 0x2dfc, 0x2e03, 0x2e0c, 0x2e1b, 0x2e24, 0x2e33, 0x2e3c,
    0x2e45, 0x2e81, 0x2f5d, 0x2f79, 0x2f9b, 0x2fad, 0x3030, 0x304b, 0x3058, 0x3063,
    0x3070, 0x3084, 0x30db, 0x30e5, 0x30eb, 0x3101, 0x325c, 0x3302, 0x3353, 0x3371,
    0x3384, 0x3389, 0x36a3, 0x36a9, 0x36b4, 0x36ed, 0x36f0, 0x36fc, 0x3729, 0x373c,
    0x3748, 0x3754, 0x3771, 0x3782, 0x37d1, 0x37e8, 0x37f9, 0x3803, 0x3875, 0x3881,
    0x388c, 0x3891, 0x3984, 0x3a5d, 0x3a69, 0x3d34, 0x3d89, 0x3d95, 0x3e02, 0x3e51,
    0x3f5c, 0x3fa1, 0x3fb0, 0x3fbb, 0x3fd1, 0x3fdd, 0x3fec, 0x3ff0, 0x4001, 0x40b4,
    0x40d1, 0x40dc, 0x4121, 0x412c, 0x4141, 0x414c, 0x4175, 0x4183, 0x41fd, 0x4201,
    0x42cc, 0x42e5, 0x42f3, 0x42fd, 0x4301, 0x435d, 0x4381, 0x4440, 0x4449, 0x447d,
    0x44c4, 0x4501, 0x4654, 0x4715, 0x471c, 0x4818, 0x4821, 0x49d4, 0x49d8, 0x49e4,
    0x49e9, 0x49f0, 0x4a0c, 0x4a48, 0x4a6c, 0x4a70, 0x4a81, 0x4a8c, 0x4ac1, 0x4b14,
    0x4b23, 0x4b32, 0x4b83, 0x4b89, 0x4c0c, 0x4c10, 0x4c25, 0x4c29, 0x4c6d, 0x4c79,
    0x4c8d, 0x4c99, 0x4d4d, 0x4d51, 0x4d8d, 0x4d91, 0x4d9d, 0x4db1, 0x4dd5, 0x4de4,
    0x4de9, 0x4df0, 0x4e0c, 0x4e2d, 0x4e38, 0x4e4d, 0x4e58, 0x4e6c, 0x4e71, 0x4e7d,
    0x4eb8, 0x4ec5, 0x4ee1, 0x4ef5, 0x4ef9, 0x4f14, 0x4f25, 0x4f32, 0x4f81, 0x4f90,
    0x4fa2, 0x4fd0, 0x4fe1, 0x4feb, 0x4ff4, 0x4ffd, 0x500c, 0x5018, 0x5025, 0x5029,
    0x505d, 0x5079, 0x508d, 0x5099, 0x514d, 0x5151, 0x518d, 0x5191, 0x51a5, 0x51a9,
    0x51bd, 0x51c1, 0x51d5, 0x51e4, 0x51ed, 0x51f0, 0x520c, 0x521d, 0x523c, 0x524d,
    0x525c, 0x5275, 0x528c, 0x5295, 0x52c9, 0x52ed, 0x52f1, 0x52fd, 0x5332, 0x5384,
    0x5391, 0x53ac, 0x53b3, 0x53bd, 0x540c, 0x5418, 0x5425, 0x5429, 0x5475, 0x5479,
    0x5495, 0x5499, 0x554d, 0x5551, 0x558d, 0x5591, 0x55a5, 0x55a9, 0x55d5, 0x55e4,
    0x55e9, 0x55f0, 0x560c, 0x5635, 0x563c, 0x5648, 0x5655, 0x5658, 0x566c, 0x5675,
    0x5681, 0x568d, 0x5701, 0x5714, 0x5725, 0x5732, 0x5783, 0x5788, 0x5795, 0x57c9,
    0x57d4, 0x5805, 0x580c, 0x5810, 0x5825, 0x5829, 0x586d, 0x5879, 0x588d, 0x5899,
    0x594d, 0x5951, 0x598d, 0x5991, 0x59a5, 0x59a9, 0x59d5, 0x59e4, 0x59e9, 0x59f0,
    0x59fc, 0x5a00, 0x5a0c, 0x5a2d, 0x5a38, 0x5a4d, 0x5a58, 0x5a6c, 0x5a75, 0x5aac,
    0x5ab8, 0x5ac5, 0x5ae1, 0x5af5, 0x5af9, 0x5b14, 0x5b25, 0x5b32, 0x5b80, 0x5b89,
    0x5b92, 0x5bc5, 0x5c14, 0x5c19, 0x5c25, 0x5c29, 0x5c5d, 0x5c71, 0x5c8d, 0x5c91,
    0x5cb5, 0x5cc9, 0x5cdd, 0x5ce1, 0x5ced, 0x5cf1, 0x5d05, 0x5d19, 0x5d2d, 0x5d41,
    0x5d5d, 0x5d71, 0x5dd5, 0x5df0, 0x5e04, 0x5e08, 0x5e1d, 0x5e30, 0x5e4d, 0x5e50,
    0x5e6c, 0x5e75, 0x5e81, 0x5e8d, 0x5eb8, 0x5ec5, 0x5f32, 0x5f98, 0x5fdd, 0x6004,
    0x6008, 0x6024, 0x6029, 0x606d, 0x6071, 0x608d, 0x6091, 0x614d, 0x6151, 0x61d5,
    0x61e4, 0x61e9, 0x61f4, 0x6208, 0x622d, 0x6234, 0x624d, 0x6254, 0x6275, 0x62ac,
    0x62bd, 0x62c1, 0x62dd, 0x62e9, 0x62f5, 0x6301, 0x6314, 0x6325, 0x6332, 0x6385,
    0x63bb, 0x63c2, 0x63f8, 0x6401, 0x640c, 0x6410, 0x6423, 0x6429, 0x646d, 0x6471,
    0x648d, 0x6491, 0x654d, 0x6551, 0x65a5, 0x65a9, 0x65d5, 0x65e4, 0x65e9, 0x65f0,
    0x65fc, 0x6600, 0x662d, 0x6634, 0x6638, 0x664d, 0x6650, 0x6664, 0x6675, 0x66a8,
    0x66bd, 0x66e9, 0x66fd, 0x6701, 0x6714, 0x6725, 0x6732, 0x6785, 0x6789, 0x679d,
    0x6804, 0x6810, 0x6821, 0x686d, 0x6871, 0x688d, 0x6891, 0x69dc, 0x69e9, 0x69f0,
    0x6a0c, 0x6a2d, 0x6a30, 0x6a4d, 0x6a50, 0x6a6c, 0x6a71, 0x6a78, 0x6a85, 0x6aa1,
    0x6ab8, 0x6ac2, 0x6af9, 0x6b14, 0x6b25, 0x6b32, 0x6bc8, 0x6bd1, 0x6c05, 0x6c0c,
    0x6c10, 0x6c25, 0x6c29, 0x6cbd, 0x6cd1, 0x6d95, 0x6d99, 0x6de5, 0x6de9, 0x6df5,
    0x6e01, 0x6e3d, 0x6e54, 0x6e5d, 0x6e78, 0x6e94, 0x6ead, 0x6eb4, 0x6ebd, 0x6ec0,
    0x6f05, 0x6f32, 0x6f85, 0x6f90, 0x6fa3, 0x6fad, 0x7009, 0x718c, 0x7191, 0x71a4,
    0x71dd, 0x71f8, 0x7201, 0x723c, 0x727b, 0x7282, 0x72d3, 0x72e5, 0x7409, 0x741d,
    0x7421, 0x742d, 0x7431, 0x745d, 0x7461, 0x7525, 0x7529, 0x7535, 0x7539, 0x758c,
    0x7591, 0x75a4, 0x75e9, 0x75f5, 0x7601, 0x762d, 0x7631, 0x763d, 0x7644, 0x7675,
    0x7682, 0x76d5, 0x76e1, 0x7705, 0x7801, 0x7808, 0x7823, 0x7898, 0x78a3, 0x78a8,
    0x78c4, 0x78d0, 0x7902, 0x79a0, 0x79ac, 0x79b0, 0x79bc, 0x79c0, 0x79cc, 0x79d3,
    0x79f0, 0x7a01, 0x7a45, 0x7a49, 0x7b6d, 0x7b8c, 0x7bf8, 0x7c04, 0x7c2b, 0x7c34,
    0x7c41, 0x7c6c, 0x7cc5, 0x7ccc, 0x7ded, 0x7df0, 0x7e34, 0x7e38, 0x7e6d, 0x7e70,
    0x7e83, 0x7ea8, 0x7ecb, 0x7edd, 0x8001, 0x8158, 0x816c, 0x8188, 0x8194, 0x81c0,
    0x81cc, 0x81d8, 0x81ec, 0x81f9, 0x8202, 0x8253, 0x8281, 0x82b0, 0x82c4, 0x82d1,
    0x82f4, 0x8309, 0x8310, 0x8329, 0x8338, 0x8371, 0x838c, 0x83a9, 0x8414, 0x8418,
    0x842c, 0x8438, 0x846c, 0x8471, 0x8478, 0x8482, 0x84d0, 0x84ec, 0x84f0, 0x8501,
    0x8635, 0x8639, 0x8645, 0x8669, 0x8675, 0x8681, 0x87db, 0x87e1, 0x924d, 0x9251,
    0x9275, 0x9281, 0x92bd, 0x92c1, 0x92cd, 0x92d1, 0x92f5, 0x9301, 0x944d, 0x9451,
    0x9475, 0x9481, 0x958d, 0x9591, 0x95b5, 0x95c1, 0x95fd, 0x9601, 0x960d, 0x9611,
    0x9635, 0x9641, 0x96bd, 0x96c1, 0x988d, 0x9891, 0x98b5, 0x98c1, 0x9add, 0x9aec,
    0x9b03, 0x9b4a, 0x9bed, 0x9c01, 0x9c80, 0x9cd5, 0x9d01, 0x9fb5, 0x9fc1, 0x9ff5,
    0xa003, 0xa009, 0xb368, 0xb373, 0xb379, 0xb400, 0xb409, 0xb4db, 0xb4ed, 0xb501,
    0xb75b, 0xb772, 0xb789, 0xb7cd, 0xb801, 0xb894, 0xb8a8, 0xb8b5, 0xb8f9, 0xb994,
    0xb9a0, 0xb9ab, 0xb9bd, 0xba01, 0xba94, 0xbaa5, 0xbb01, 0xbb6d, 0xbb71, 0xbb8d,
    0xbb94, 0xbba5, 0xbc01, 0xbda4, 0xbdb0, 0xbdbc, 0xbdf0, 0xbe34, 0xbe38, 0xbe4c,
    0xbea3, 0xbeb9, 0xbec3, 0xbed8, 0xbee1, 0xbeec, 0xbef5, 0xbf02, 0xbf55, 0xbf82,
    0xbfd5, 0xc003, 0xc05c, 0xc075, 0xc07c, 0xc082, 0xc0d5, 0xc101, 0xc3cd, 0xc401,
    0xc42c, 0xc439, 0xc54c, 0xc551, 0xc55d, 0xc581, 0xc7b5, 0xc801, 0xc8fd, 0xc904,
    0xc918, 0xc93c, 0xc948, 0xc965, 0xc980, 0xc994, 0xc998, 0xc9cc, 0xc9e5, 0xca00,
    0xca0d, 0xca23, 0xca32, 0xca81, 0xcb75, 0xcb81, 0xcbad, 0xcc01, 0xcd65, 0xcd81,
    0xce55, 0xce82, 0xcedd, 0xcef0, 0xd001, 0xd0bc, 0xd0c8, 0xd0dc, 0xd0e5, 0xd0f3,
    0xd101, 0xd2a8, 0xd2b4, 0xd2b8, 0xd2c4, 0xd2fd, 0xd304, 0xd308, 0xd314, 0xd318,
    0xd32c, 0xd368, 0xd39c, 0xd3ed, 0xd3fc, 0xd402, 0xd455, 0xd482, 0xd4d5, 0xd503,
    0xd539, 0xd543, 0xd575, 0xd584, 0xd5f0, 0xd5fc, 0xd67d, 0xd804, 0xd820, 0xd829,
    0xd9a4, 0xd9a8, 0xd9b4, 0xd9d8, 0xd9e4, 0xd9e8, 0xda14, 0xda18, 0xda29, 0xda6d,
    0xda82, 0xdad3, 0xdb08, 0xdb5c, 0xdba0, 0xdbeb, 0xdbfd, 0xdc04, 0xdc10, 0xdc19,
    0xdd08, 0xdd14, 0xdd30, 0xdd44, 0xdd50, 0xdd5c, 0xdd71, 0xdd82, 0xddd1, 0xdf34,
    0xdf38, 0xdf44, 0xdf50, 0xdf6c, 0xdf70, 0xdf7c, 0xdf90, 0xdfa5, 0xdfe3, 0xe001,
    0xe120, 0xe164, 0xe1a0, 0xe1b4, 0xe1c5, 0xe1db, 0xe202, 0xe255, 0xe269, 0xe282,
    0xe2d1, 0xe3f3, 0xe401, 0xe44d, 0xe481, 0xe5dd, 0xe5e9, 0xe603, 0xe645, 0xe684,
    0xe69b, 0xe6a4, 0xe708, 0xe714, 0xe749, 0xe76c, 0xe771, 0xe7a4, 0xe7a9, 0xe7b8,
    0xe7c4, 0xe7d1, 0xe7dd, 0xe801, 0xee04, 0xf001, 0xf8b5, 0xf8c1, 0xf8f5, 0xf901,
    0xfa35, 0xfa41, 0xfa75, 0xfa81, 0xfac5, 0xfac9, 0xfad5, 0xfad9, 0xfae5, 0xfae9,
    0xfaf5, 0xfaf9, 0xfbf5, 0xfc01, 0xfdad, 0xfdb1, 0xfde8, 0xfdf1, 0xfdf8, 0xfe11,
    0xfe2d, 0xfe31, 0xfe68, 0xfe81, 0xfea5, 0xfeb1, 0xfee5, 0xfee8, 0xff01, 0xff68,
    0xff85, 0xff91, 0xffad, 0xffb1, 0xffe8, 0xfffd, 0x10000, 0x1005d, 0x10083, 0x10140,
    0x10155, 0x10178, 0x10183, 0x10220, 0x1022b, 0x10290, 0x1029b, 0x102f8, 0x10305, 0x10382,
    0x10389, 0x10395, 0x103a2, 0x103d0, 0x103eb, 0x103f9, 0x10402, 0x10450, 0x1046b, 0x1047d,
    0x10481, 0x104ed, 0x10500, 0x1060d, 0x10684, 0x106e8, 0x1070c, 0x10710, 0x1072c, 0x1078d,
    0x10800, 0x10811, 0x10818, 0x10839, 0x10840, 0x10851, 0x108a0, 0x108a9, 0x108b0, 0x108c9,
    0x108f0, 0x10921, 0x10928, 0x10931, 0x10938, 0x10941, 0x10948, 0x10951, 0x10970, 0x10979,
    0x109d0, 0x109e1, 0x10a00, 0x10a29, 0x10a50, 0x10a71, 0x10a78, 0x10a82, 0x10c19, 0x10c2a,
    0x10c50, 0x10c65, 0x10c80, 0x11843, 0x11860, 0x1194b, 0x11958, 0x1213d, 0x12200, 0x1225d,
    0x12302, 0x124e0, 0x12752, 0x12800, 0x13b43, 0x13bb2, 0x13ca0, 0x13e2b, 0x13e38, 0x13f33,
    0x13f80, 0x14c1b, 0x14cc8, 0x14ec3, 0x14ee0, 0x14fe3, 0x14ff0, 0x15ba5, 0x15bb0, 0x15cb5,
    0x15cb8, 0x16001, 0x16728, 0x16759, 0x1677c, 0x16791, 0x167a5, 0x167cb, 0x167ea, 0x167f3,
    0x16801, 0x16935, 0x16939, 0x16945, 0x16969, 0x16975, 0x16981, 0x16b45, 0x16b79, 0x16b83,
    0x16b8d, 0x16bfc, 0x16c01, 0x16cbd, 0x16d01, 0x16d3d, 0x16d41, 0x16d7d, 0x16d81, 0x16dbd,
    0x16dc1, 0x16dfd, 0x16e01, 0x16e3d, 0x16e41, 0x16e7d, 0x16e81, 0x16ebd, 0x16ec1, 0x16efd,
    0x16f04, 0x17003, 0x17179, 0x17183, 0x17280, 0x17293, 0x172f5, 0x17400, 0x174d5, 0x174d8,
    0x177a5, 0x17800, 0x17eb5, 0x17f80, 0x17fe5, 0x18000, 0x1800b, 0x18020, 0x18029, 0x1803a,
    0x18043, 0x18090, 0x180a3, 0x18100, 0x1810a, 0x18154, 0x18170, 0x18183, 0x18189, 0x181b0,
    0x181c2, 0x181d9, 0x181eb, 0x181f0, 0x18205, 0x18209, 0x184bd, 0x184cc, 0x184d8, 0x184e9,
    0x18503, 0x18509, 0x187db, 0x187e1, 0x18805, 0x18829, 0x18985, 0x18989, 0x18c7d, 0x18c80,
    0x18c92, 0x18cb0, 0x18d01, 0x18e00, 0x18f25, 0x18f81, 0x19000, 0x190fd, 0x19102, 0x19150,
    0x19242, 0x19280, 0x1928a, 0x19300, 0x19402, 0x19450, 0x1958a, 0x19600, 0x1a001, 0x26e00,
    0x27001, 0x5246d, 0x52480, 0x5263d, 0x52681, 0x527f3, 0x52801, 0x5306b, 0x53081, 0x53102,
    0x53151, 0x53165, 0x53201, 0x5337c, 0x53380, 0x5339b, 0x533a4, 0x533f3, 0x533f9, 0x534f4,
    0x53501, 0x53732, 0x53784, 0x53793, 0x537c5, 0x53800, 0x538b9, 0x53900, 0x53911, 0x53c48,
    0x53c59, 0x53e5d, 0x53e81, 0x53e95, 0x53e99, 0x53ea5, 0x53ea9, 0x53ed5, 0x53f91, 0x54014,
    0x54019, 0x54034, 0x54039, 0x5405c, 0x54061, 0x54118, 0x5412c, 0x54138, 0x54164, 0x5416d,
    0x54182, 0x541b0, 0x541d5, 0x54201, 0x543a3, 0x543c5, 0x54400, 0x54411, 0x545a0, 0x54624,
    0x54635, 0x54673, 0x54682, 0x546d5, 0x54704, 0x54791, 0x547c3, 0x547d9, 0x547e3, 0x547e9,
    0x547fc, 0x54802, 0x54851, 0x54934, 0x54973, 0x54981, 0x54a3c, 0x54a90, 0x54aa5, 0x54afb,
    0x54b01, 0x54bed, 0x54c04, 0x54c18, 0x54c21, 0x54d9c, 0x54da0, 0x54db4, 0x54dd0, 0x54de4,
    0x54df0, 0x54e0b, 0x54e75, 0x54e79, 0x54e82, 0x54ed5, 0x54ef3, 0x54f01, 0x54f2c, 0x54f31,
    0x54f82, 0x54fd1, 0x54ffd, 0x55001, 0x5514c, 0x55178, 0x5518c, 0x55198, 0x551ac, 0x551bd,
    0x55201, 0x5521c, 0x55221, 0x55264, 0x55268, 0x55275, 0x55282, 0x552d5, 0x552e3, 0x55301,
    0x553b8, 0x553d1, 0x553d8, 0x553e4, 0x553e8, 0x553f1, 0x55584, 0x55589, 0x55594, 0x555a9,
    0x555bc, 0x555c9, 0x555f4, 0x55601, 0x5560c, 0x55611, 0x5561d, 0x556d9, 0x556f3, 0x55701,
    0x55758, 0x55764, 0x55770, 0x55783, 0x55791, 0x557a8, 0x557b4, 0x557bd, 0x55809, 0x5583d,
    0x55849, 0x5587d, 0x55889, 0x558bd, 0x55901, 0x5593d, 0x55941, 0x5597d, 0x55981, 0x55ad8,
    0x55ae1, 0x55b50, 0x55b65, 0x55b81, 0x55f18, 0x55f2c, 0x55f30, 0x55f44, 0x55f48, 0x55f5b,
    0x55f60, 0x55f6c, 0x55f75, 0x55f82, 0x55fd5, 0x56001, 0x6bd25, 0x6bd81, 0x6be3d, 0x6be59,
    0x6bfe5, 0x7c801, 0x7d375, 0x7d381, 0x7d6d5, 0x7d801, 0x7d83d, 0x7d899, 0x7d8c5, 0x7d8e9,
    0x7d8f4, 0x7d8f9, 0x7d948, 0x7d951, 0x7d9bd, 0x7d9c1, 0x7d9ed, 0x7d9f1, 0x7d9fd, 0x7da01,
    0x7da15, 0x7da19, 0x7da2d, 0x7da31, 0x7dd90, 0x7de1d, 0x7de99, 0x7e9f3, 0x7ea00, 0x7ea81,
    0x7ec85, 0x7ec91, 0x7ee45, 0x7ee78, 0x7ee85, 0x7ef81, 0x7efe0, 0x7f004, 0x7f083, 0x7f0d5,
    0x7f104, 0x7f183, 0x7f29d, 0x7f2a3, 0x7f310, 0x7f31b, 0x7f320, 0x7f33d, 0x7f343, 0x7f348,
    0x7f353, 0x7f365, 0x7f381, 0x7f3ad, 0x7f3b1, 0x7f7ed, 0x7f80b, 0x7f820, 0x7f82b, 0x7f858,
    0x7f863, 0x7f882, 0x7f8d3, 0x7f8e0, 0x7f8fb, 0x7f909, 0x7f9db, 0x7f9f0, 0x7f9fb, 0x7fa00,
    0x7fa09, 0x7fadb, 0x7fae0, 0x7faeb, 0x7faf0, 0x7fafb, 0x7fb31, 0x7fdfd, 0x7fe11, 0x7fe45,
    0x7fe51, 0x7fe85, 0x7fe91, 0x7fec5, 0x7fed1, 0x7feed, 0x7ff00, 0x7ff3d, 0x7ff40, 0x7ff7d,
    0x7ffe0, 0x7fff5, 0x80001, 0x80065, 0x80069, 0x8013d, 0x80141, 0x801dd, 0x801e1, 0x801f5,
    0x801f9, 0x80275, 0x80281, 0x802f5, 0x80401, 0x807dd, 0x80803, 0x8081d, 0x8083a, 0x809a5,
    0x809b8, 0x80a02, 0x80bc8, 0x80c52, 0x80c60, 0x80c7d, 0x80c80, 0x80ced, 0x80d00, 0x80d0d,
    0x80e80, 0x80fec, 0x80ff5, 0x81401, 0x814ed, 0x81501, 0x8168d, 0x81704, 0x8170a, 0x817e5,
    0x81801, 0x81902, 0x81925, 0x81969, 0x81a0a, 0x81a11, 0x81a52, 0x81a5d, 0x81a81, 0x81bb4,
    0x81bdd, 0x81c01, 0x81cf5, 0x81cfb, 0x81d01, 0x81e25, 0x81e41, 0x81e83, 0x81e8a, 0x81eb5,
    0x82001, 0x824f5, 0x82502, 0x82555, 0x82581, 0x826a5, 0x826c1, 0x827e5, 0x82801, 0x82945,
    0x82981, 0x82b25, 0x82b7b, 0x82b81, 0x82bdd, 0x82be1, 0x82c5d, 0x82c61, 0x82c9d, 0x82ca1,
    0x82cb5, 0x82cb9, 0x82d15, 0x82d19, 0x82d95, 0x82d99, 0x82dd5, 0x82dd9, 0x82ded, 0x83001,
    0x839bd, 0x83a01, 0x83ab5, 0x83b01, 0x83b45, 0x83c01, 0x83c35, 0x83c39, 0x83d8d, 0x83d91,
    0x83ddd, 0x84001, 0x84035, 0x84041, 0x8404d, 0x84051, 0x841b5, 0x841b9, 0x841cd, 0x841e1,
    0x841ed, 0x841f9, 0x842b5, 0x842bb, 0x842c2, 0x84301, 0x843b8, 0x843ca, 0x84401, 0x844fd,
    0x8453a, 0x84585, 0x84701, 0x8479d, 0x847a1, 0x847b5, 0x847da, 0x84801, 0x848b2, 0x848e5,
    0x848fb, 0x84901, 0x849d5, 0x849fb, 0x84a05, 0x84c01, 0x84dc5, 0x84de2, 0x84df1, 0x84e02,
    0x84e85, 0x84e92, 0x85001, 0x8500c, 0x85025, 0x8502c, 0x8503d, 0x85064, 0x85081, 0x850a5,
    0x850a9, 0x850c5, 0x850c9, 0x851b5, 0x851c4, 0x851dd, 0x851fc, 0x85202, 0x8524d, 0x85283,
    0x852cd, 0x85301, 0x853ea, 0x853fb, 0x85401, 0x854ea, 0x85505, 0x85601, 0x85640, 0x85649,
    0x8572c, 0x8573d, 0x8575a, 0x85783, 0x857bd, 0x85801, 0x859b5, 0x859cb, 0x85a01, 0x85ab5,
    0x85ac2, 0x85b01, 0x85b9d, 0x85bc2, 0x85c01, 0x85c95, 0x85ccb, 0x85ced, 0x85d4a, 0x85d85,
    0x86001, 0x8624d, 0x86401, 0x8659d, 0x86601, 0x8679d, 0x867d2, 0x86801, 0x86924, 0x86945,
    0x86982, 0x869d5, 0x87302, 0x873fd, 0x87401, 0x87555, 0x8755c, 0x8756b, 0x87575, 0x87581,
    0x87595, 0x87801, 0x878ea, 0x87939, 0x87945, 0x87981, 0x87a34, 0x87a8a, 0x87aab, 0x87ad5,
    0x87b81, 0x87c14, 0x87c33, 0x87c55, 0x87d81, 0x87e2a, 0x87e65, 0x87f01, 0x87fbd, 0x88000,
    0x8800c, 0x88010, 0x88019, 0x881c4, 0x8823b, 0x88275, 0x88292, 0x88384, 0x88389, 0x8839c,
    0x883a9, 0x883b5, 0x883fc, 0x88410, 0x88419, 0x88580, 0x8859c, 0x885b8, 0x885cc, 0x885db,
    0x885ed, 0x885f3, 0x88614, 0x8861d, 0x88681, 0x8874d, 0x88782, 0x887d5, 0x88804, 0x88819,
    0x8893c, 0x88960, 0x8896c, 0x889ad, 0x889b2, 0x88a03, 0x88a21, 0x88a28, 0x88a39, 0x88a45,
    0x88a81, 0x88b9c, 0x88ba3, 0x88bb1, 0x88bbd, 0x88c04, 0x88c10, 0x88c19, 0x88d98, 0x88db4,
    0x88df8, 0x88e09, 0x88e2b, 0x88e4c, 0x88e6b, 0x88e70, 0x88e7c, 0x88e82, 0x88ed1, 0x88edb,
    0x88ee1, 0x88eeb, 0x88f05, 0x88f0a, 0x88fad, 0x89001, 0x89095, 0x89099, 0x89160, 0x8917c,
    0x89190, 0x891a4, 0x891a8, 0x891b4, 0x891c3, 0x891f4, 0x891fd, 0x89401, 0x8943d, 0x89441,
    0x8944d, 0x89451, 0x89475, 0x89479, 0x894f5, 0x894f9, 0x8954b, 0x89555, 0x89581, 0x896fc,
    0x89700, 0x8971c, 0x8975d, 0x89782, 0x897d5, 0x89804, 0x89810, 0x89825, 0x89829, 0x8986d,
    0x89879, 0x8988d, 0x89899, 0x8994d, 0x89951, 0x8998d, 0x89991, 0x899a5, 0x899a9, 0x899d5,
    0x899dc, 0x899e9, 0x899f0, 0x89a04, 0x89a08, 0x89a2d, 0x89a38, 0x89a4d, 0x89a58, 0x89a75,
    0x89a81, 0x89a8d, 0x89ab8, 0x89ac5, 0x89ae9, 0x89b10, 0x89b25, 0x89b34, 0x89b6d, 0x89b84,
    0x89bad, 0x8a001, 0x8a1a8, 0x8a1c4, 0x8a200, 0x8a214, 0x8a228, 0x8a234, 0x8a239, 0x8a25b,
    0x8a282, 0x8a2d3, 0x8a2e5, 0x8a2eb, 0x8a2f4, 0x8a2f9, 0x8a315, 0x8a401, 0x8a580, 0x8a59c,
    0x8a5c8, 0x8a5d4, 0x8a5d8, 0x8a5fc, 0x8a608, 0x8a614, 0x8a621, 0x8a633, 0x8a639, 0x8a645,
    0x8a682, 0x8a6d5, 0x8ac01, 0x8ad78, 0x8ad94, 0x8adb5, 0x8adc0, 0x8ade4, 0x8adf0, 0x8adfc,
    0x8ae0b, 0x8aec1, 0x8aee4, 0x8aef5, 0x8b001, 0x8b180, 0x8b19c, 0x8b1d8, 0x8b1ec, 0x8b1f0,
    0x8b1fc, 0x8b20b, 0x8b221, 0x8b22d, 0x8b282, 0x8b2d5, 0x8b303, 0x8b36d, 0x8b401, 0x8b55c,
    0x8b560, 0x8b56c, 0x8b570, 0x8b584, 0x8b5b0, 0x8b5bc, 0x8b5c1, 0x8b5cb, 0x8b5d5, 0x8b602,
    0x8b655, 0x8b801, 0x8b8dd, 0x8b8ec, 0x8b900, 0x8b914, 0x8b930, 0x8b93c, 0x8b965, 0x8b982,
    0x8b9e3, 0x8b9f8, 0x8ba01, 0x8ba3d, 0x8c001, 0x8c160, 0x8c17c, 0x8c1c0, 0x8c1cc, 0x8c1db,
    0x8c1e5, 0x8c501, 0x8c702, 0x8c79d, 0x8c7f9, 0x8c83d, 0x8c849, 0x8c855, 0x8c861, 0x8c8a5,
    0x8c8a9, 0x8c8bd, 0x8c8c1, 0x8c980, 0x8c9b5, 0x8c9b8, 0x8c9cd, 0x8c9dc, 0x8c9e8, 0x8c9f4,
    0x8c9f9, 0x8ca00, 0x8ca09, 0x8ca10, 0x8ca1c, 0x8ca23, 0x8ca3d, 0x8ca82, 0x8cad5, 0x8cd01,
    0x8cd45, 0x8cd51, 0x8ce88, 0x8cea4, 0x8cec5, 0x8ced4, 0x8cee0, 0x8cf04, 0x8cf09, 0x8cf13,
    0x8cf19, 0x8cf20, 0x8cf2d, 0x8d001, 0x8d00c, 0x8d059, 0x8d19c, 0x8d1c8, 0x8d1d1, 0x8d1dc,
    0x8d1fb, 0x8d23c, 0x8d245, 0x8d281, 0x8d28c, 0x8d2b8, 0x8d2cc, 0x8d2e1, 0x8d454, 0x8d4b8,
    0x8d4c4, 0x8d4d3, 0x8d4e9, 0x8d4f3, 0x8d51d, 0x8d581, 0x8d7cd, 0x8e001, 0x8e04d, 0x8e051,
    0x8e178, 0x8e184, 0x8e1bd, 0x8e1c4, 0x8e1f0, 0x8e1fc, 0x8e201, 0x8e20b, 0x8e235, 0x8e282,
    0x8e36d, 0x8e383, 0x8e391, 0x8e485, 0x8e494, 0x8e545, 0x8e548, 0x8e554, 0x8e588, 0x8e594,
    0x8e5a0, 0x8e5ac, 0x8e5bd, 0x8e801, 0x8e83d, 0x8e841, 0x8e855, 0x8e859, 0x8e98c, 0x8e9bd,
    0x8e9d4, 0x8e9dd, 0x8e9e4, 0x8e9f5, 0x8e9fc, 0x8ea31, 0x8ea3c, 0x8ea45, 0x8ea82, 0x8ead5,
    0x8eb01, 0x8eb35, 0x8eb39, 0x8eb4d, 0x8eb51, 0x8ec50, 0x8ec7d, 0x8ec84, 0x8ec95, 0x8ec98,
    0x8ecac, 0x8ecb0, 0x8ecbc, 0x8ecc1, 0x8eccd, 0x8ed02, 0x8ed55, 0x8f701, 0x8f79c, 0x8f7a8,
    0x8f7bb, 0x8f7cd, 0x8fd81, 0x8fd8d, 0x8fe02, 0x8fea8, 0x8ff95, 0x8fffb, 0x90001, 0x91cd5,
    0x92002, 0x9237d, 0x92383, 0x923ad, 0x92401, 0x92a25, 0x97c81, 0x97f8b, 0x97f9d, 0x98001,
    0x9a17d, 0xa2001, 0xa323d, 0xb4001, 0xb51cd, 0xb5201, 0xb52fd, 0xb5302, 0xb5355, 0xb5373,
    0xb5381, 0xb55fd, 0xb5602, 0xb5655, 0xb5681, 0xb5775, 0xb5784, 0xb57ab, 0xb57b5, 0xb5801,
    0xb5984, 0xb59bb, 0xb59e0, 0xb5a01, 0xb5a23, 0xb5a28, 0xb5a35, 0xb5a82, 0xb5ad5, 0xb5ada,
    0xb5b15, 0xb5b19, 0xb5bc5, 0xb5be9, 0xb5c85, 0xb7201, 0xb7402, 0xb74bb, 0xb74dd, 0xb7801,
    0xb7a5d, 0xb7a7c, 0xb7a81, 0xb7a88, 0xb7c45, 0xb7c7c, 0xb7c99, 0xb7d05, 0xb7f01, 0xb7f13,
    0xb7f19, 0xb7f24, 0xb7f2d, 0xb7f80, 0xb7f95, 0xb8001, 0xc3fc5, 0xc4001, 0xc66b5, 0xc6801,
    0xc684d, 0xd7f81, 0xd7fa5, 0xd7fa9, 0xd7fe5, 0xd7fe9, 0xd7ffd, 0xd8001, 0xd891d, 0xd8a81,
    0xd8a9d, 0xd8b21, 0xd8b45, 0xd8b81, 0xd97e5, 0xde001, 0xde35d, 0xde381, 0xde3ed, 0xde401,
    0xde44d, 0xde481, 0xde4d5, 0xde4e0, 0xde4ec, 0xde4fb, 0xde505, 0xe7804, 0xe7975, 0xe7984,
    0xe7a3d, 0xe7a80, 0xe7e25, 0xe8000, 0xe87b5, 0xe8800, 0xe893d, 0xe8948, 0xe8b3c, 0xe8b50,
    0xe8b9d, 0xe8bdc, 0xe8c18, 0xe8c2c, 0xe8c60, 0xe8d54, 0xe8d70, 0xe8f5d, 0xe9000, 0xe9214,
    0xe9228, 0xe9235, 0xe9702, 0xe97a5, 0xe9800, 0xe9abd, 0xe9b02, 0xe9bcd, 0xea001, 0xea2ad,
    0xea2b1, 0xea4ed, 0xea4f1, 0xea505, 0xea511, 0xea51d, 0xea529, 0xea53d, 0xea549, 0xea56d,
    0xea571, 0xea5d5, 0xea5d9, 0xea5e5, 0xea5e9, 0xea625, 0xea629, 0xea835, 0xea839, 0xea85d,
    0xea869, 0xea8ad, 0xea8b1, 0xea8ed, 0xea8f1, 0xea9d5, 0xea9d9, 0xea9fd, 0xeaa01, 0xeaa2d,
    0xeaa31, 0xeaa3d, 0xeaa51, 0xeaa8d, 0xeaa91, 0xeb535, 0xeb541, 0xeb608, 0xeb611, 0xeb6d8,
    0xeb6e1, 0xeb7d8, 0xeb7e1, 0xeb8a8, 0xeb8b1, 0xeb9a8, 0xeb9b1, 0xeba78, 0xeba81, 0xebb78,
    0xebb81, 0xebc48, 0xebc51, 0xebd48, 0xebd51, 0xebe18, 0xebe21, 0xebe65, 0xebe72, 0xec000,
    0xed004, 0xed1b8, 0xed1dc, 0xed368, 0xed3ac, 0xed3b0, 0xed424, 0xed428, 0xed43b, 0xed465,
    0xed4dc, 0xed505, 0xed50c, 0xed585, 0xef801, 0xef8fd, 0xf0004, 0xf003d, 0xf0044, 0xf00cd,
    0xf00dc, 0xf0115, 0xf011c, 0xf012d, 0xf0134, 0xf015d, 0xf0801, 0xf096d, 0xf0984, 0xf09b9,
    0xf09f5, 0xf0a02, 0xf0a55, 0xf0a71, 0xf0a78, 0xf0a85, 0xf1481, 0xf1574, 0xf157d, 0xf1601,
    0xf1764, 0xf1782, 0xf17d5, 0xf17f8, 0xf1805, 0xf3f01, 0xf3f3d, 0xf3f41, 0xf3f65, 0xf3f69,
    0xf3f7d, 0xf3f81, 0xf3ffd, 0xf4001, 0xf462d, 0xf463a, 0xf4684, 0xf46bd, 0xf4801, 0xf4a24,
    0xf4a59, 0xf4a65, 0xf4a82, 0xf4ad5, 0xf4af3, 0xf4b05, 0xf638a, 0xf6560, 0xf656a, 0xf6580,
    0xf658a, 0xf65ad, 0xf680a, 0xf6970, 0xf697a, 0xf69f5, 0xf7001, 0xf7025, 0xf7029, 0xf7105,
    0xf7109, 0xf711d, 0xf7121, 0xf712d, 0xf7139, 0xf7145, 0xf7149, 0xf719d, 0xf71a1, 0xf71c5,
    0xf71c9, 0xf71d5, 0xf71d9, 0xf71e5, 0xf7211, 0xf721d, 0xf7239, 0xf7245, 0xf7249, 0xf7255,
    0xf7259, 0xf7265, 0xf7269, 0xf7285, 0xf7289, 0xf729d, 0xf72a1, 0xf72ad, 0xf72b9, 0xf72c5,
    0xf72c9, 0xf72d5, 0xf72d9, 0xf72e5, 0xf72e9, 0xf72f5, 0xf72f9, 0xf7305, 0xf7309, 0xf731d,
    0xf7321, 0xf732d, 0xf7339, 0xf735d, 0xf7361, 0xf739d, 0xf73a1, 0xf73c5, 0xf73c9, 0xf73ed,
    0xf73f1, 0xf73fd, 0xf7401, 0xf7455, 0xf7459, 0xf74e5, 0xf7509, 0xf7525, 0xf7529, 0xf7555,
    0xf7559, 0xf75e5, 0xf7780, 0xf7795, 0xf8000, 0xf8165, 0xf8180, 0xf84a5, 0xf8500, 0xf857d,
    0xf8588, 0xf8605, 0xf8608, 0xf8685, 0xf8688, 0xf87b5, 0xf8802, 0xf8868, 0xf8d75, 0xf8f30,
    0xf901d, 0xf9080, 0xf91e5, 0xf9200, 0xf924d, 0xf9280, 0xf9295, 0xf9300, 0xf9335, 0xf9800,
    0xfb6c5, 0xfb6e8, 0xfb76d, 0xfb780, 0xfb7ed, 0xfb800, 0xfbba5, 0xfbc00, 0xfbecd, 0xfbf00,
    0xfbf65, 0xfbf80, 0xfbf8d, 0xfc000, 0xfc065, 0xfc080, 0xfc245, 0xfc280, 0xfc2d5, 0xfc300,
    0xfc445, 0xfc480, 0xfc575, 0xfc580, 0xfc595, 0xfc800, 0xfd2a5, 0xfd300, 0xfd375, 0xfd380,
    0xfd3ad, 0xfd3c0, 0xfd3ed, 0xfd400, 0xfd43d, 0xfd480, 0xfd56d, 0xfd580, 0xfd5dd, 0xfd600,
    0xfd635, 0xfd680, 0xfd6d5, 0xfd700, 0xfd745, 0xfd780, 0xfd7bd, 0xfd800, 0xfdc9d, 0xfdca0,
    0xfde5d, 0xfdf82, 0xfdfd5, 0x100001, 0x153705, 0x153801, 0x15b9cd, 0x15ba01, 0x15c0f5, 0x15c101,
    0x167515, 0x167581, 0x175f0d, 0x17c001, 0x17d0f5, 0x180001, 0x189a5d, 0x700804, 0x700f85,
};
/* Unicode 14.0.0 one-to-one lowercase mappings: {first, count, stride, delta}. */
static const struct uc_lower_run uc_lower_runs[181] = {
    {0x41,26,1,32}, {0xc0,23,1,32}, {0xd8,7,1,32}, {0x100,24,2,1}, {0x132,3,2,1},
    {0x139,8,2,1}, {0x14a,23,2,1}, {0x178,1,1,-121}, {0x179,3,2,1}, {0x181,1,1,210},
    {0x182,2,2,1}, {0x186,1,1,206}, {0x187,1,1,1}, {0x189,2,1,205}, {0x18b,1,1,1},
    {0x18e,1,1,79}, {0x18f,1,1,202}, {0x190,1,1,203}, {0x191,1,1,1}, {0x193,1,1,205},
    {0x194,1,1,207}, {0x196,1,1,211}, {0x197,1,1,209}, {0x198,1,1,1}, {0x19c,1,1,211},
    {0x19d,1,1,213}, {0x19f,1,1,214}, {0x1a0,3,2,1}, {0x1a6,1,1,218}, {0x1a7,1,1,1},
    {0x1a9,1,1,218}, {0x1ac,1,1,1}, {0x1ae,1,1,218}, {0x1af,1,1,1}, {0x1b1,2,1,217},
    {0x1b3,2,2,1}, {0x1b7,1,1,219}, {0x1b8,1,1,1}, {0x1bc,1,1,1}, {0x1c4,1,1,2},
    {0x1c5,1,1,1}, {0x1c7,1,1,2}, {0x1c8,1,1,1}, {0x1ca,1,1,2}, {0x1cb,9,2,1},
    {0x1de,9,2,1}, {0x1f1,1,1,2}, {0x1f2,2,2,1}, {0x1f6,1,1,-97}, {0x1f7,1,1,-56},
    {0x1f8,20,2,1}, {0x220,1,1,-130}, {0x222,9,2,1}, {0x23a,1,1,10795}, {0x23b,1,1,1},
    {0x23d,1,1,-163}, {0x23e,1,1,10792}, {0x241,1,1,1}, {0x243,1,1,-195}, {0x244,1,1,69},
    {0x245,1,1,71}, {0x246,5,2,1}, {0x370,2,2,1}, {0x376,1,1,1}, {0x37f,1,1,116},
    {0x386,1,1,38}, {0x388,3,1,37}, {0x38c,1,1,64}, {0x38e,2,1,63}, {0x391,17,1,32},
    {0x3a3,9,1,32}, {0x3cf,1,1,8}, {0x3d8,12,2,1}, {0x3f4,1,1,-60}, {0x3f7,1,1,1},
    {0x3f9,1,1,-7}, {0x3fa,1,1,1}, {0x3fd,3,1,-130}, {0x400,16,1,80}, {0x410,32,1,32},
    {0x460,17,2,1}, {0x48a,27,2,1}, {0x4c0,1,1,15}, {0x4c1,7,2,1}, {0x4d0,48,2,1},
    {0x531,38,1,48}, {0x10a0,38,1,7264}, {0x10c7,1,1,7264}, {0x10cd,1,1,7264}, {0x13a0,80,1,38864},
    {0x13f0,6,1,8}, {0x1c90,43,1,-3008}, {0x1cbd,3,1,-3008}, {0x1e00,75,2,1}, {0x1e9e,1,1,-7615},
    {0x1ea0,48,2,1}, {0x1f08,8,1,-8}, {0x1f18,6,1,-8}, {0x1f28,8,1,-8}, {0x1f38,8,1,-8},
    {0x1f48,6,1,-8}, {0x1f59,4,2,-8}, {0x1f68,8,1,-8}, {0x1f88,8,1,-8}, {0x1f98,8,1,-8},
    {0x1fa8,8,1,-8}, {0x1fb8,2,1,-8}, {0x1fba,2,1,-74}, {0x1fbc,1,1,-9}, {0x1fc8,4,1,-86},
    {0x1fcc,1,1,-9}, {0x1fd8,2,1,-8}, {0x1fda,2,1,-100}, {0x1fe8,2,1,-8}, {0x1fea,2,1,-112},
    {0x1fec,1,1,-7}, {0x1ff8,2,1,-128}, {0x1ffa,2,1,-126}, {0x1ffc,1,1,-9}, {0x2126,1,1,-7517},
    {0x212a,1,1,-8383}, {0x212b,1,1,-8262}, {0x2132,1,1,28}, {0x2160,16,1,16}, {0x2183,1,1,1},
    {0x24b6,26,1,26}, {0x2c00,48,1,48}, {0x2c60,1,1,1}, {0x2c62,1,1,-10743}, {0x2c63,1,1,-3814},
    {0x2c64,1,1,-10727}, {0x2c67,3,2,1}, {0x2c6d,1,1,-10780}, {0x2c6e,1,1,-10749}, {0x2c6f,1,1,-10783},
    {0x2c70,1,1,-10782}, {0x2c72,1,1,1}, {0x2c75,1,1,1}, {0x2c7e,2,1,-10815}, {0x2c80,50,2,1},
    {0x2ceb,2,2,1}, {0x2cf2,1,1,1}, {0xa640,23,2,1}, {0xa680,14,2,1}, {0xa722,7,2,1},
    {0xa732,31,2,1}, {0xa779,2,2,1}, {0xa77d,1,1,-35332}, {0xa77e,5,2,1}, {0xa78b,1,1,1},
    {0xa78d,1,1,-42280}, {0xa790,2,2,1}, {0xa796,10,2,1}, {0xa7aa,1,1,-42308}, {0xa7ab,1,1,-42319},
    {0xa7ac,1,1,-42315}, {0xa7ad,1,1,-42305}, {0xa7ae,1,1,-42308}, {0xa7b0,1,1,-42258}, {0xa7b1,1,1,-42282},
    {0xa7b2,1,1,-42261}, {0xa7b3,1,1,928}, {0xa7b4,8,2,1}, {0xa7c4,1,1,-48}, {0xa7c5,1,1,-42307},
    {0xa7c6,1,1,-35384}, {0xa7c7,2,2,1}, {0xa7d0,1,1,1}, {0xa7d6,2,2,1}, {0xa7f5,1,1,1},
    {0xff21,26,1,32}, {0x10400,40,1,40}, {0x104b0,36,1,40}, {0x10570,11,1,39}, {0x1057c,15,1,39},
    {0x1058c,7,1,39}, {0x10594,2,1,39}, {0x10c80,51,1,64}, {0x118a0,32,1,32}, {0x16e40,32,1,32},
    {0x1e900,34,1,34},
};
/* Unicode 14.0.0 code points that follow the first one in a canonical decomposition. */
static const uint32_t uc_nfd_tail[85] = {
    0x300, 0x301, 0x302, 0x303, 0x304, 0x306, 0x307, 0x308, 0x309, 0x30a,
    0x30b, 0x30c, 0x30f, 0x311, 0x313, 0x314, 0x31b, 0x323, 0x324, 0x325,
    0x326, 0x327, 0x328, 0x32d, 0x32e, 0x330, 0x331, 0x338, 0x342, 0x345,
    0x5b4, 0x5b7, 0x5b8, 0x5b9, 0x5bc, 0x5bf, 0x5c1, 0x5c2, 0x653, 0x654,
    0x655, 0x93c, 0x9bc, 0x9be, 0x9d7, 0xa3c, 0xb3c, 0xb3e, 0xb56, 0xb57,
    0xbbe, 0xbd7, 0xc56, 0xcc2, 0xcd5, 0xcd6, 0xd3e, 0xd57, 0xdca, 0xdcf,
    0xddf, 0xf72, 0xf74, 0xf80, 0xfb5, 0xfb7, 0x102e, 0x1b35, 0x3099, 0x309a,
    0x110ba, 0x11127, 0x1133e, 0x11357, 0x114b0, 0x114ba, 0x114bd, 0x115af, 0x11930, 0x1d165,
    0x1d16e, 0x1d16f, 0x1d170, 0x1d171, 0x1d172,
};
/* Unicode 14.0.0 canonical decompositions: c << 42 | first << 21 | up to three 7-bit indices
 * (1-based) into uc_nfd_tail. */
static const uint64_t uc_nfd_table[1059] = {
    0x3000008204000ULL, 0x3040008208000ULL, 0x308000820c000ULL, 0x30c0008210000ULL, 0x3100008220000ULL,
    0x3140008228000ULL, 0x31c0008658000ULL, 0x3200008a04000ULL, 0x3240008a08000ULL, 0x3280008a0c000ULL,
    0x32c0008a20000ULL, 0x3300009204000ULL, 0x3340009208000ULL, 0x338000920c000ULL, 0x33c0009220000ULL,
    0x3440009c10000ULL, 0x3480009e04000ULL, 0x34c0009e08000ULL, 0x3500009e0c000ULL, 0x3540009e10000ULL,
    0x3580009e20000ULL, 0x364000aa04000ULL, 0x368000aa08000ULL, 0x36c000aa0c000ULL, 0x370000aa20000ULL,
    0x374000b208000ULL, 0x380000c204000ULL, 0x384000c208000ULL, 0x388000c20c000ULL, 0x38c000c210000ULL,
    0x390000c220000ULL, 0x394000c228000ULL, 0x39c000c658000ULL, 0x3a0000ca04000ULL, 0x3a4000ca08000ULL,
    0x3a8000ca0c000ULL, 0x3ac000ca20000ULL, 0x3b0000d204000ULL, 0x3b4000d208000ULL, 0x3b8000d20c000ULL,
    0x3bc000d220000ULL, 0x3c4000dc10000ULL, 0x3c8000de04000ULL, 0x3cc000de08000ULL, 0x3d0000de0c000ULL,
    0x3d4000de10000ULL, 0x3d8000de20000ULL, 0x3e4000ea04000ULL, 0x3e8000ea08000ULL, 0x3ec000ea0c000ULL,
    0x3f0000ea20000ULL, 0x3f4000f208000ULL, 0x3fc000f220000ULL, 0x4000008214000ULL, 0x404000c214000ULL,
    0x4080008218000ULL, 0x40c000c218000ULL, 0x410000825c000ULL, 0x414000c25c000ULL, 0x4180008608000ULL,
    0x41c000c608000ULL, 0x420000860c000ULL, 0x424000c60c000ULL, 0x428000861c000ULL, 0x42c000c61c000ULL,
    0x4300008630000ULL, 0x434000c630000ULL, 0x4380008830000ULL, 0x43c000c830000ULL, 0x4480008a14000ULL,
    0x44c000ca14000ULL, 0x4500008a18000ULL, 0x454000ca18000ULL, 0x4580008a1c000ULL, 0x45c000ca1c000ULL,
    0x4600008a5c000ULL, 0x464000ca5c000ULL, 0x4680008a30000ULL, 0x46c000ca30000ULL, 0x4700008e0c000ULL,
    0x474000ce0c000ULL, 0x4780008e18000ULL, 0x47c000ce18000ULL, 0x4800008e1c000ULL, 0x484000ce1c000ULL,
    0x4880008e58000ULL, 0x48c000ce58000ULL, 0x490000900c000ULL, 0x494000d00c000ULL, 0x4a00009210000ULL,
    0x4a4000d210000ULL, 0x4a80009214000ULL, 0x4ac000d214000ULL, 0x4b00009218000ULL, 0x4b4000d218000ULL,
    0x4b8000925c000ULL, 0x4bc000d25c000ULL, 0x4c0000921c000ULL, 0x4d0000940c000ULL, 0x4d4000d40c000ULL,
    0x4d80009658000ULL, 0x4dc000d658000ULL, 0x4e40009808000ULL, 0x4e8000d808000ULL, 0x4ec0009858000ULL,
    0x4f0000d858000ULL, 0x4f40009830000ULL, 0x4f8000d830000ULL, 0x50c0009c08000ULL, 0x510000dc08000ULL,
    0x5140009c58000ULL, 0x518000dc58000ULL, 0x51c0009c30000ULL, 0x520000dc30000ULL, 0x5300009e14000ULL,
    0x534000de14000ULL, 0x5380009e18000ULL, 0x53c000de18000ULL, 0x5400009e2c000ULL, 0x544000de2c000ULL,
    0x550000a408000ULL, 0x554000e408000ULL, 0x558000a458000ULL, 0x55c000e458000ULL, 0x560000a430000ULL,
    0x564000e430000ULL, 0x568000a608000ULL, 0x56c000e608000ULL, 0x570000a60c000ULL, 0x574000e60c000ULL,
    0x578000a658000ULL, 0x57c000e658000ULL, 0x580000a630000ULL, 0x584000e630000ULL, 0x588000a858000ULL,
    0x58c000e858000ULL, 0x590000a830000ULL, 0x594000e830000ULL, 0x5a0000aa10000ULL, 0x5a4000ea10000ULL,
    0x5a8000aa14000ULL, 0x5ac000ea14000ULL, 0x5b0000aa18000ULL, 0x5b4000ea18000ULL, 0x5b8000aa28000ULL,
    0x5bc000ea28000ULL, 0x5c0000aa2c000ULL, 0x5c4000ea2c000ULL, 0x5c8000aa5c000ULL, 0x5cc000ea5c000ULL,
    0x5d0000ae0c000ULL, 0x5d4000ee0c000ULL, 0x5d8000b20c000ULL, 0x5dc000f20c000ULL, 0x5e0000b220000ULL,
    0x5e4000b408000ULL, 0x5e8000f408000ULL, 0x5ec000b41c000ULL, 0x5f0000f41c000ULL, 0x5f4000b430000ULL,
    0x5f8000f430000ULL, 0x6800009e44000ULL, 0x684000de44000ULL, 0x6bc000aa44000ULL, 0x6c0000ea44000ULL,
    0x7340008230000ULL, 0x738000c230000ULL, 0x73c0009230000ULL, 0x740000d230000ULL, 0x7440009e30000ULL,
    0x748000de30000ULL, 0x74c000aa30000ULL, 0x750000ea30000ULL, 0x754000aa20280ULL, 0x758000ea20280ULL,
    0x75c000aa20100ULL, 0x760000ea20100ULL, 0x764000aa20600ULL, 0x768000ea20600ULL, 0x76c000aa20080ULL,
    0x770000ea20080ULL, 0x7780008220280ULL, 0x77c000c220280ULL, 0x780000821c280ULL, 0x784000c21c280ULL,
    0x7880018c14000ULL, 0x78c001cc14000ULL, 0x7980008e30000ULL, 0x79c000ce30000ULL, 0x7a00009630000ULL,
    0x7a4000d630000ULL, 0x7a80009e5c000ULL, 0x7ac000de5c000ULL, 0x7b00009e5c280ULL, 0x7b4000de5c280ULL,
    0x7b80036e30000ULL, 0x7bc0052430000ULL, 0x7c0000d430000ULL, 0x7d00008e08000ULL, 0x7d4000ce08000ULL,
    0x7e00009c04000ULL, 0x7e4000dc04000ULL, 0x7e80008228100ULL, 0x7ec000c228100ULL, 0x7f00018c08000ULL,
    0x7f4001cc08000ULL, 0x7f8001b008000ULL, 0x7fc001f008000ULL, 0x8000008234000ULL, 0x804000c234000ULL,
    0x8080008238000ULL, 0x80c000c238000ULL, 0x8100008a34000ULL, 0x814000ca34000ULL, 0x8180008a38000ULL,
    0x81c000ca38000ULL, 0x8200009234000ULL, 0x824000d234000ULL, 0x8280009238000ULL, 0x82c000d238000ULL,
    0x8300009e34000ULL, 0x834000de34000ULL, 0x8380009e38000ULL, 0x83c000de38000ULL, 0x840000a434000ULL,
    0x844000e434000ULL, 0x848000a438000ULL, 0x84c000e438000ULL, 0x850000aa34000ULL, 0x854000ea34000ULL,
    0x858000aa38000ULL, 0x85c000ea38000ULL, 0x860000a654000ULL, 0x864000e654000ULL, 0x868000a854000ULL,
    0x86c000e854000ULL, 0x8780009030000ULL, 0x87c000d030000ULL, 0x898000821c000ULL, 0x89c000c21c000ULL,
    0x8a00008a58000ULL, 0x8a4000ca58000ULL, 0x8a80009e20280ULL, 0x8ac000de20280ULL, 0x8b00009e10280ULL,
    0x8b4000de10280ULL, 0x8b80009e1c000ULL, 0x8bc000de1c000ULL, 0x8c00009e1c280ULL, 0x8c4000de1c280ULL,
    0x8c8000b214000ULL, 0x8cc000f214000ULL, 0xd000060000000ULL, 0xd040060200000ULL, 0xd0c0062600000ULL,
    0xd100061008000ULL, 0xdd00057200000ULL, 0xdf80007600000ULL, 0xe140015008000ULL, 0xe180072208000ULL,
    0xe1c0016e00000ULL, 0xe200072a08000ULL, 0xe240072e08000ULL, 0xe280073208000ULL, 0xe300073e08000ULL,
    0xe380074a08000ULL, 0xe3c0075208000ULL, 0xe400077220100ULL, 0xea80073220000ULL, 0xeac0074a20000ULL,
    0xeb00076208000ULL, 0xeb40076a08000ULL, 0xeb80076e08000ULL, 0xebc0077208000ULL, 0xec00078a20100ULL,
    0xf280077220000ULL, 0xf2c0078a20000ULL, 0xf300077e08000ULL, 0xf340078a08000ULL, 0xf380079208000ULL,
    0xf4c007a408000ULL, 0xf50007a420000ULL, 0x10000082a04000ULL, 0x10040082a20000ULL, 0x100c0082608000ULL,
    0x101c0080c20000ULL, 0x10300083408000ULL, 0x10340083004000ULL, 0x10380084618000ULL, 0x10640083018000ULL,
    0x10e40087018000ULL, 0x11400086a04000ULL, 0x11440086a20000ULL, 0x114c0086608000ULL, 0x115c008ac20000ULL,
    0x11700087408000ULL, 0x11740087004000ULL, 0x11780088618000ULL, 0x11d8008e834000ULL, 0x11dc008ea34000ULL,
    0x13040082c18000ULL, 0x13080086c18000ULL, 0x13400082018000ULL, 0x13440086018000ULL, 0x13480082020000ULL,
    0x134c0086020000ULL, 0x13580082a18000ULL, 0x135c0086a18000ULL, 0x1368009b020000ULL, 0x136c009b220000ULL,
    0x13700082c20000ULL, 0x13740086c20000ULL, 0x13780082e20000ULL, 0x137c0086e20000ULL, 0x13880083014000ULL,
    0x138c0087014000ULL, 0x13900083020000ULL, 0x13940087020000ULL, 0x13980083c20000ULL, 0x139c0087c20000ULL,
    0x13a8009d020000ULL, 0x13ac009d220000ULL, 0x13b00085a20000ULL, 0x13b40089a20000ULL, 0x13b80084614000ULL,
    0x13bc0088614000ULL, 0x13c00084620000ULL, 0x13c40088620000ULL, 0x13c8008462c000ULL, 0x13cc008862c000ULL,
    0x13d00084e20000ULL, 0x13d40088e20000ULL, 0x13e00085620000ULL, 0x13e40089620000ULL, 0x188800c4e9c000ULL,
    0x188c00c4ea0000ULL, 0x189000c90a0000ULL, 0x189400c4ea4000ULL, 0x189800c94a0000ULL, 0x1b0000daaa0000ULL,
    0x1b0800d82a0000ULL, 0x1b4c00da4a0000ULL, 0x24a401250a8000ULL, 0x24c401260a8000ULL, 0x24d001266a8000ULL,
    0x25600122aa8000ULL, 0x25640122ca8000ULL, 0x25680122ea8000ULL, 0x256c01238a8000ULL, 0x257001242a8000ULL,
    0x257401244a8000ULL, 0x257801256a8000ULL, 0x257c0125ea8000ULL, 0x272c0138eb0000ULL, 0x27300138eb4000ULL,
    0x277001342ac000ULL, 0x277401344ac000ULL, 0x277c0135eac000ULL, 0x28cc01464b8000ULL, 0x28d801470b8000ULL,
    0x29640142cb8000ULL, 0x29680142eb8000ULL, 0x296c01438b8000ULL, 0x297801456b8000ULL, 0x2d200168ec4000ULL,
    0x2d2c0168ec0000ULL, 0x2d300168ec8000ULL, 0x2d7001642bc000ULL, 0x2d7401644bc000ULL, 0x2e5001724d0000ULL,
    0x2f280178ccc000ULL, 0x2f2c0178ecc000ULL, 0x2f300178cd0000ULL, 0x31200188cd4000ULL, 0x33000197edc000ULL,
    0x331c0198cdc000ULL, 0x33200198ce0000ULL, 0x33280198cd8000ULL, 0x332c0198cd9b80ULL, 0x352801a8ce4000ULL,
    0x352c01a8ee4000ULL, 0x353001a8ce8000ULL, 0x376801bb2ec000ULL, 0x377001bb2f0000ULL, 0x377401bb2f1d80ULL,
    0x377801bb2f4000ULL, 0x3d0c01e8508000ULL, 0x3d3401e9908000ULL, 0x3d4801ea308000ULL, 0x3d5c01ead08000ULL,
    0x3d7001eb708000ULL, 0x3da401e8104000ULL, 0x3dcc01ee2f8000ULL, 0x3dd401ee2fc000ULL, 0x3dd801f6500000ULL,
    0x3de001f6700000ULL, 0x3e0401ee300000ULL, 0x3e4c01f2508000ULL, 0x3e7401f3908000ULL, 0x3e8801f4308000ULL,
    0x3e9c01f4d08000ULL, 0x3eb001f5708000ULL, 0x3ee401f2104000ULL, 0x40980204b0c000ULL, 0x6c180360b10000ULL,
    0x6c200360f10000ULL, 0x6c280361310000ULL, 0x6c300361710000ULL, 0x6c380361b10000ULL, 0x6c480362310000ULL,
    0x6cec0367510000ULL, 0x6cf40367910000ULL, 0x6d000367d10000ULL, 0x6d040367f10000ULL, 0x6d0c0368510000ULL,
    0x78000008250000ULL, 0x7804000c250000ULL, 0x7808000841c000ULL, 0x780c000c41c000ULL, 0x78100008448000ULL,
    0x7814000c448000ULL, 0x7818000846c000ULL, 0x781c000c46c000ULL, 0x78200008658100ULL, 0x7824000c658100ULL,
    0x7828000881c000ULL, 0x782c000c81c000ULL, 0x78300008848000ULL, 0x7834000c848000ULL, 0x7838000886c000ULL,
    0x783c000c86c000ULL, 0x78400008858000ULL, 0x7844000c858000ULL, 0x78480008860000ULL, 0x784c000c860000ULL,
    0x78500008a14080ULL, 0x7854000ca14080ULL, 0x78580008a14100ULL, 0x785c000ca14100ULL, 0x78600008a60000ULL,
    0x7864000ca60000ULL, 0x78680008a68000ULL, 0x786c000ca68000ULL, 0x78700008a58300ULL, 0x7874000ca58300ULL,
    0x78780008c1c000ULL, 0x787c000cc1c000ULL, 0x78800008e14000ULL, 0x7884000ce14000ULL, 0x7888000901c000ULL,
    0x788c000d01c000ULL, 0x78900009048000ULL, 0x7894000d048000ULL, 0x78980009020000ULL, 0x789c000d020000ULL,
    0x78a00009058000ULL, 0x78a4000d058000ULL, 0x78a80009064000ULL, 0x78ac000d064000ULL, 0x78b00009268000ULL,
    0x78b4000d268000ULL, 0x78b80009220100ULL, 0x78bc000d220100ULL, 0x78c00009608000ULL, 0x78c4000d608000ULL,
    0x78c80009648000ULL, 0x78cc000d648000ULL, 0x78d0000966c000ULL, 0x78d4000d66c000ULL, 0x78d80009848000ULL,
    0x78dc000d848000ULL, 0x78e00009848280ULL, 0x78e4000d848280ULL, 0x78e8000986c000ULL, 0x78ec000d86c000ULL,
    0x78f00009860000ULL, 0x78f4000d860000ULL, 0x78f80009a08000ULL, 0x78fc000da08000ULL, 0x79000009a1c000ULL,
    0x7904000da1c000ULL, 0x79080009a48000ULL, 0x790c000da48000ULL, 0x79100009c1c000ULL, 0x7914000dc1c000ULL,
    0x79180009c48000ULL, 0x791c000dc48000ULL, 0x79200009c6c000ULL, 0x7924000dc6c000ULL, 0x79280009c60000ULL,
    0x792c000dc60000ULL, 0x79300009e10100ULL, 0x7934000de10100ULL, 0x79380009e10400ULL, 0x793c000de10400ULL,
    0x79400009e14080ULL, 0x7944000de14080ULL, 0x79480009e14100ULL, 0x794c000de14100ULL, 0x7950000a008000ULL,
    0x7954000e008000ULL, 0x7958000a01c000ULL, 0x795c000e01c000ULL, 0x7960000a41c000ULL, 0x7964000e41c000ULL,
    0x7968000a448000ULL, 0x796c000e448000ULL, 0x7970000a448280ULL, 0x7974000e448280ULL, 0x7978000a46c000ULL,
    0x797c000e46c000ULL, 0x7980000a61c000ULL, 0x7984000e61c000ULL, 0x7988000a648000ULL, 0x798c000e648000ULL,
    0x7990000a608380ULL, 0x7994000e608380ULL, 0x7998000a630380ULL, 0x799c000e630380ULL, 0x79a0000a648380ULL,
    0x79a4000e648380ULL, 0x79a8000a81c000ULL, 0x79ac000e81c000ULL, 0x79b0000a848000ULL, 0x79b4000e848000ULL,
    0x79b8000a86c000ULL, 0x79bc000e86c000ULL, 0x79c0000a860000ULL, 0x79c4000e860000ULL, 0x79c8000aa4c000ULL,
    0x79cc000ea4c000ULL, 0x79d0000aa68000ULL, 0x79d4000ea68000ULL, 0x79d8000aa60000ULL, 0x79dc000ea60000ULL,
    0x79e0000aa10100ULL, 0x79e4000ea10100ULL, 0x79e8000aa14400ULL, 0x79ec000ea14400ULL, 0x79f0000ac10000ULL,
    0x79f4000ec10000ULL, 0x79f8000ac48000ULL, 0x79fc000ec48000ULL, 0x7a00000ae04000ULL, 0x7a04000ee04000ULL,
    0x7a08000ae08000ULL, 0x7a0c000ee08000ULL, 0x7a10000ae20000ULL, 0x7a14000ee20000ULL, 0x7a18000ae1c000ULL,
    0x7a1c000ee1c000ULL, 0x7a20000ae48000ULL, 0x7a24000ee48000ULL, 0x7a28000b01c000ULL, 0x7a2c000f01c000ULL,
    0x7a30000b020000ULL, 0x7a34000f020000ULL, 0x7a38000b21c000ULL, 0x7a3c000f21c000ULL, 0x7a40000b40c000ULL,
    0x7a44000f40c000ULL, 0x7a48000b448000ULL, 0x7a4c000f448000ULL, 0x7a50000b46c000ULL, 0x7a54000f46c000ULL,
    0x7a58000d06c000ULL, 0x7a5c000e820000ULL, 0x7a60000ee28000ULL, 0x7a64000f228000ULL, 0x7a6c002fe1c000ULL,
    0x7a800008248000ULL, 0x7a84000c248000ULL, 0x7a880008224000ULL, 0x7a8c000c224000ULL, 0x7a90000820c100ULL,
    0x7a94000c20c100ULL, 0x7a98000820c080ULL, 0x7a9c000c20c080ULL, 0x7aa0000820c480ULL, 0x7aa4000c20c480ULL,
    0x7aa8000820c200ULL, 0x7aac000c20c200ULL, 0x7ab00008248180ULL, 0x7ab4000c248180ULL, 0x7ab80008218100ULL,
    0x7abc000c218100ULL, 0x7ac00008218080ULL, 0x7ac4000c218080ULL, 0x7ac80008218480ULL, 0x7acc000c218480ULL,
    0x7ad00008218200ULL, 0x7ad4000c218200ULL, 0x7ad80008248300ULL, 0x7adc000c248300ULL, 0x7ae00008a48000ULL,
    0x7ae4000ca48000ULL, 0x7ae80008a24000ULL, 0x7aec000ca24000ULL, 0x7af00008a10000ULL, 0x7af4000ca10000ULL,
    0x7af80008a0c100ULL, 0x7afc000ca0c100ULL, 0x7b000008a0c080ULL, 0x7b04000ca0c080ULL, 0x7b080008a0c480ULL,
    0x7b0c000ca0c480ULL, 0x7b100008a0c200ULL, 0x7b14000ca0c200ULL, 0x7b180008a48180ULL, 0x7b1c000ca48180ULL,
    0x7b200009224000ULL, 0x7b24000d224000ULL, 0x7b280009248000ULL, 0x7b2c000d248000ULL, 0x7b300009e48000ULL,
    0x7b34000de48000ULL, 0x7b380009e24000ULL, 0x7b3c000de24000ULL, 0x7b400009e0c100ULL, 0x7b44000de0c100ULL,
    0x7b480009e0c080ULL, 0x7b4c000de0c080ULL, 0x7b500009e0c480ULL, 0x7b54000de0c480ULL, 0x7b580009e0c200ULL,
    0x7b5c000de0c200ULL, 0x7b600009e48180ULL, 0x7b64000de48180ULL, 0x7b680009e44100ULL, 0x7b6c000de44100ULL,
    0x7b700009e44080ULL, 0x7b74000de44080ULL, 0x7b780009e44480ULL, 0x7b7c000de44480ULL, 0x7b800009e44200ULL,
    0x7b84000de44200ULL, 0x7b880009e44900ULL, 0x7b8c000de44900ULL, 0x7b90000aa48000ULL, 0x7b94000ea48000ULL,
    0x7b98000aa24000ULL, 0x7b9c000ea24000ULL, 0x7ba0000aa44100ULL, 0x7ba4000ea44100ULL, 0x7ba8000aa44080ULL,
    0x7bac000ea44080ULL, 0x7bb0000aa44480ULL, 0x7bb4000ea44480ULL, 0x7bb8000aa44200ULL, 0x7bbc000ea44200ULL,
    0x7bc0000aa44900ULL, 0x7bc4000ea44900ULL, 0x7bc8000b204000ULL, 0x7bcc000f204000ULL, 0x7bd0000b248000ULL,
    0x7bd4000f248000ULL, 0x7bd8000b224000ULL, 0x7bdc000f224000ULL, 0x7be0000b210000ULL, 0x7be4000f210000ULL,
    0x7c00007623c000ULL, 0x7c040076240000ULL, 0x7c08007623c080ULL, 0x7c0c0076240080ULL, 0x7c10007623c100ULL,
    0x7c140076240100ULL, 0x7c18007623ce80ULL, 0x7c1c0076240e80ULL, 0x7c20007223c000ULL, 0x7c240072240000ULL,
    0x7c28007223c080ULL, 0x7c2c0072240080ULL, 0x7c30007223c100ULL, 0x7c340072240100ULL, 0x7c38007223ce80ULL,
    0x7c3c0072240e80ULL, 0x7c400076a3c000ULL, 0x7c440076a40000ULL, 0x7c480076a3c080ULL, 0x7c4c0076a40080ULL,
    0x7c500076a3c100ULL, 0x7c540076a40100ULL, 0x7c600072a3c000ULL, 0x7c640072a40000ULL, 0x7c680072a3c080ULL,
    0x7c6c0072a40080ULL, 0x7c700072a3c100ULL, 0x7c740072a40100ULL, 0x7c800076e3c000ULL, 0x7c840076e40000ULL,
    0x7c880076e3c080ULL, 0x7c8c0076e40080ULL, 0x7c900076e3c100ULL, 0x7c940076e40100ULL, 0x7c980076e3ce80ULL,
    0x7c9c0076e40e80ULL, 0x7ca00072e3c000ULL, 0x7ca40072e40000ULL, 0x7ca80072e3c080ULL, 0x7cac0072e40080ULL,
    0x7cb00072e3c100ULL, 0x7cb40072e40100ULL, 0x7cb80072e3ce80ULL, 0x7cbc0072e40e80ULL, 0x7cc0007723c000ULL,
    0x7cc40077240000ULL, 0x7cc8007723c080ULL, 0x7ccc0077240080ULL, 0x7cd0007723c100ULL, 0x7cd40077240100ULL,
    0x7cd8007723ce80ULL, 0x7cdc0077240e80ULL, 0x7ce0007323c000ULL, 0x7ce40073240000ULL, 0x7ce8007323c080ULL,
    0x7cec0073240080ULL, 0x7cf0007323c100ULL, 0x7cf40073240100ULL, 0x7cf8007323ce80ULL, 0x7cfc0073240e80ULL,
    0x7d000077e3c000ULL, 0x7d040077e40000ULL, 0x7d080077e3c080ULL, 0x7d0c0077e40080ULL, 0x7d100077e3c100ULL,
    0x7d140077e40100ULL, 0x7d200073e3c000ULL, 0x7d240073e40000ULL, 0x7d280073e3c080ULL, 0x7d2c0073e40080ULL,
    0x7d300073e3c100ULL, 0x7d340073e40100ULL, 0x7d400078a3c000ULL, 0x7d440078a40000ULL, 0x7d480078a3c080ULL,
    0x7d4c0078a40080ULL, 0x7d500078a3c100ULL, 0x7d540078a40100ULL, 0x7d580078a3ce80ULL, 0x7d5c0078a40e80ULL,
    0x7d640074a40000ULL, 0x7d6c0074a40080ULL, 0x7d740074a40100ULL, 0x7d7c0074a40e80ULL, 0x7d80007923c000ULL,
    0x7d840079240000ULL, 0x7d88007923c080ULL, 0x7d8c0079240080ULL, 0x7d90007923c100ULL, 0x7d940079240100ULL,
    0x7d98007923ce80ULL, 0x7d9c0079240e80ULL, 0x7da0007523c000ULL, 0x7da40075240000ULL, 0x7da8007523c080ULL,
    0x7dac0075240080ULL, 0x7db0007523c100ULL, 0x7db40075240100ULL, 0x7db8007523ce80ULL, 0x7dbc0075240e80ULL,
    0x7dc00076204000ULL, 0x7dc40076208000ULL, 0x7dc80076a04000ULL, 0x7dcc0076a08000ULL, 0x7dd00076e04000ULL,
    0x7dd40076e08000ULL, 0x7dd80077204000ULL, 0x7ddc0077208000ULL, 0x7de00077e04000ULL, 0x7de40077e08000ULL,
    0x7de80078a04000ULL, 0x7dec0078a08000ULL, 0x7df00079204000ULL, 0x7df40079208000ULL, 0x7e00007623cf00ULL,
    0x7e040076240f00ULL, 0x7e08007623c09eULL, 0x7e0c007624009eULL, 0x7e10007623c11eULL, 0x7e14007624011eULL,
    0x7e18007623ce9eULL, 0x7e1c0076240e9eULL, 0x7e20007223cf00ULL, 0x7e240072240f00ULL, 0x7e28007223c09eULL,
    0x7e2c007224009eULL, 0x7e30007223c11eULL, 0x7e34007224011eULL, 0x7e38007223ce9eULL, 0x7e3c0072240e9eULL,
    0x7e400076e3cf00ULL, 0x7e440076e40f00ULL, 0x7e480076e3c09eULL, 0x7e4c0076e4009eULL, 0x7e500076e3c11eULL,
    0x7e540076e4011eULL, 0x7e580076e3ce9eULL, 0x7e5c0076e40e9eULL, 0x7e600072e3cf00ULL, 0x7e640072e40f00ULL,
    0x7e680072e3c09eULL, 0x7e6c0072e4009eULL, 0x7e700072e3c11eULL, 0x7e740072e4011eULL, 0x7e780072e3ce9eULL,
    0x7e7c0072e40e9eULL, 0x7e80007923cf00ULL, 0x7e840079240f00ULL, 0x7e88007923c09eULL, 0x7e8c007924009eULL,
    0x7e90007923c11eULL, 0x7e94007924011eULL, 0x7e98007923ce9eULL, 0x7e9c0079240e9eULL, 0x7ea0007523cf00ULL,
    0x7ea40075240f00ULL, 0x7ea8007523c09eULL, 0x7eac007524009eULL, 0x7eb0007523c11eULL, 0x7eb4007524011eULL,
    0x7eb8007523ce9eULL, 0x7ebc0075240e9eULL, 0x7ec00076218000ULL, 0x7ec40076214000ULL, 0x7ec80076204f00ULL,
    0x7ecc0076278000ULL, 0x7ed00076208f00ULL, 0x7ed80076274000ULL, 0x7edc0076274f00ULL, 0x7ee00072218000ULL,
    0x7ee40072214000ULL, 0x7ee80072204000ULL, 0x7eec0072208000ULL, 0x7ef00072278000ULL, 0x7ef80077200000ULL,
    0x7f040015074000ULL, 0x7f080076e04f00ULL, 0x7f0c0076e78000ULL, 0x7f100076e08f00ULL, 0x7f180076e74000ULL,
    0x7f1c0076e74f00ULL, 0x7f200072a04000ULL, 0x7f240072a08000ULL, 0x7f280072e04000ULL, 0x7f2c0072e08000ULL,
    0x7f300072e78000ULL, 0x7f3403f7e04000ULL, 0x7f3803f7e08000ULL, 0x7f3c03f7e74000ULL, 0x7f400077218000ULL,
    0x7f440077214000ULL, 0x7f480077220080ULL, 0x7f4c0077220100ULL, 0x7f580077274000ULL, 0x7f5c0077220e80ULL,
    0x7f600073218000ULL, 0x7f640073214000ULL, 0x7f680073204000ULL, 0x7f6c0073208000ULL, 0x7f7403ffc04000ULL,
    0x7f7803ffc08000ULL, 0x7f7c03ffc74000ULL, 0x7f800078a18000ULL, 0x7f840078a14000ULL, 0x7f880078a20080ULL,
    0x7f8c0078a20100ULL, 0x7f90007823c000ULL, 0x7f940078240000ULL, 0x7f980078a74000ULL, 0x7f9c0078a20e80ULL,
    0x7fa00074a18000ULL, 0x7fa40074a14000ULL, 0x7fa80074a04000ULL, 0x7fac0074a08000ULL, 0x7fb00074240000ULL,
    0x7fb40015004000ULL, 0x7fb80015008000ULL, 0x7fbc000c000000ULL, 0x7fc80079204f00ULL, 0x7fcc0079278000ULL,
    0x7fd00079208f00ULL, 0x7fd80079274000ULL, 0x7fdc0079274f00ULL, 0x7fe00073e04000ULL, 0x7fe40073e08000ULL,
    0x7fe80075204000ULL, 0x7fec0075208000ULL, 0x7ff00075278000ULL, 0x7ff40016800000ULL, 0x80000400400000ULL,
    0x80040400600000ULL, 0x84980075200000ULL, 0x84a80009600000ULL, 0x84ac0008228000ULL, 0x86680432070000ULL,
    0x866c0432470000ULL, 0x86b80432870000ULL, 0x8734043a070000ULL, 0x8738043a870000ULL, 0x873c043a470000ULL,
    0x88100440670000ULL, 0x88240441070000ULL, 0x88300441670000ULL, 0x88900444670000ULL, 0x88980444a70000ULL,
    0x89040447870000ULL, 0x89100448670000ULL, 0x891c0448a70000ULL, 0x89240449070000ULL, 0x89800007a70000ULL,
    0x8988044c270000ULL, 0x89b40449a70000ULL, 0x89b80007870000ULL, 0x89bc0007c70000ULL, 0x89c0044c870000ULL,
    0x89c4044ca70000ULL, 0x89d0044e470000ULL, 0x89d4044e670000ULL, 0x89e0044ec70000ULL, 0x89e4044ee70000ULL,
    0x8a00044f470000ULL, 0x8a04044f670000ULL, 0x8a100450470000ULL, 0x8a140450670000ULL, 0x8a200450c70000ULL,
    0x8a240450e70000ULL, 0x8ab00454470000ULL, 0x8ab40455070000ULL, 0x8ab80455270000ULL, 0x8abc0455670000ULL,
    0x8b80044f870000ULL, 0x8b84044fa70000ULL, 0x8b880452270000ULL, 0x8b8c0452470000ULL, 0x8ba80456470000ULL,
    0x8bac0456670000ULL, 0x8bb00456870000ULL, 0x8bb40456a70000ULL, 0x8ca40601000000ULL, 0x8ca80601200000ULL,
    0xab70055ba70000ULL, 0xc1300609714000ULL, 0xc1380609b14000ULL, 0xc1400609f14000ULL, 0xc148060a314000ULL,
    0xc150060a714000ULL, 0xc158060ab14000ULL, 0xc160060af14000ULL, 0xc168060b314000ULL, 0xc170060b714000ULL,
    0xc178060bb14000ULL, 0xc180060bf14000ULL, 0xc188060c314000ULL, 0xc194060c914000ULL, 0xc19c060cd14000ULL,
    0xc1a4060d114000ULL, 0xc1c0060df14000ULL, 0xc1c4060df18000ULL, 0xc1cc060e514000ULL, 0xc1d0060e518000ULL,
    0xc1d8060eb14000ULL, 0xc1dc060eb18000ULL, 0xc1e4060f114000ULL, 0xc1e8060f118000ULL, 0xc1f0060f714000ULL,
    0xc1f4060f718000ULL, 0xc2500608d14000ULL, 0xc2780613b14000ULL, 0xc2b00615714000ULL, 0xc2b80615b14000ULL,
    0xc2c00615f14000ULL, 0xc2c80616314000ULL, 0xc2d00616714000ULL, 0xc2d80616b14000ULL, 0xc2e00616f14000ULL,
    0xc2e80617314000ULL, 0xc2f00617714000ULL, 0xc2f80617b14000ULL, 0xc3000617f14000ULL, 0xc3080618314000ULL,
    0xc3140618914000ULL, 0xc31c0618d14000ULL, 0xc3240619114000ULL, 0xc3400619f14000ULL, 0xc3440619f18000ULL,
    0xc34c061a514000ULL, 0xc350061a518000ULL, 0xc358061ab14000ULL, 0xc35c061ab18000ULL, 0xc364061b114000ULL,
    0xc368061b118000ULL, 0xc370061b714000ULL, 0xc374061b718000ULL, 0xc3d00614d14000ULL, 0xc3dc061df14000ULL,
    0xc3e0061e114000ULL, 0xc3e4061e314000ULL, 0xc3e8061e514000ULL, 0xc3f8061fb14000ULL, 0x3ec7400bb27c000ULL,
    0x3ec7c00be480000ULL, 0x3eca800bd294000ULL, 0x3ecac00bd298000ULL, 0x3ecb000bd28d280ULL, 0x3ecb400bd28d300ULL,
    0x3ecb800ba080000ULL, 0x3ecbc00ba084000ULL, 0x3ecc000ba08c000ULL, 0x3ecc400ba28c000ULL, 0x3ecc800ba48c000ULL,
    0x3eccc00ba68c000ULL, 0x3ecd000ba88c000ULL, 0x3ecd400baa8c000ULL, 0x3ecd800bac8c000ULL, 0x3ece000bb08c000ULL,
    0x3ece400bb28c000ULL, 0x3ece800bb48c000ULL, 0x3ecec00bb68c000ULL, 0x3ecf000bb88c000ULL, 0x3ecf800bbc8c000ULL,
    0x3ed0000bc08c000ULL, 0x3ed0400bc28c000ULL, 0x3ed0c00bc68c000ULL, 0x3ed1000bc88c000ULL, 0x3ed1800bcc8c000ULL,
    0x3ed1c00bce8c000ULL, 0x3ed2000bd08c000ULL, 0x3ed2400bd28c000ULL, 0x3ed2800bd48c000ULL, 0x3ed2c00baa88000ULL,
    0x3ed3000ba290000ULL, 0x3ed3400bb690000ULL, 0x3ed3800bc890000ULL, 0x44268221331c000ULL, 0x44270221371c000ULL,
    0x442ac2214b1c000ULL, 0x444b82226320000ULL, 0x444bc2226520000ULL, 0x44d2c2268f24000ULL, 0x44d302268f28000ULL,
    0x452ec2297330000ULL, 0x452f0229732c000ULL, 0x452f82297334000ULL, 0x456e822b7138000ULL, 0x456ec22b7338000ULL,
    0x464e02326b3c000ULL, 0x745783a2af40000ULL, 0x7457c3a2b140000ULL, 0x745803a2b142880ULL, 0x745843a2b142900ULL,
    0x745883a2b142980ULL, 0x7458c3a2b142a00ULL, 0x745903a2b142a80ULL, 0x746ec3a37340000ULL, 0x746f03a37540000ULL,
    0x746f43a37342880ULL, 0x746f83a37542880ULL, 0x746fc3a37342900ULL, 0x747003a37542900ULL,
};

/* ==== Character classes ==== */

/* General category class of cp (UC_*). ASCII is decided inline; the rest by binary search. */
static int uc_class(uint32_t cp) {
    if (cp < 0x80) {
        if ((cp | 0x20) - 'a' < 26) return UC_LETTER;
        if (cp - '0' < 10) return UC_NUMBER;
        if (cp < 0x20 || cp == 0x7f) return UC_CONTROL;
        if (cp == ' ' || strchr("$+<=>^`|~", (int)cp)) return UC_OTHER; /* Sc, Sm, Sk */
        return UC_PUNCT;
    }
    size_t lo = 0, hi = sizeof uc_class_runs / sizeof uc_class_runs[0];
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if ((uc_class_runs[mid] >> 3) <= cp) lo = mid;
        else hi = mid;
    }
    return (int)(uc_class_runs[lo] & 7);
}

/* White_Space property (Unicode 14): Rust's char::is_whitespace, regex \s, Oniguruma \s. */
static bool uc_is_space(uint32_t cp) {
    if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0d);
    return cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

/* BertNormalizer's is_whitespace: \t \n \r count even though they are controls. */
static bool bert_is_space(uint32_t cp) { return uc_is_space(cp); }

/* BertNormalizer's is_control: category C* (Cn included) except \t \n \r. */
static bool bert_is_control(uint32_t cp) {
    if (cp == '\t' || cp == '\n' || cp == '\r') return false;
    return uc_class(cp) == UC_CONTROL;
}

/* BertPreTokenizer's is_bert_punc: ASCII punctuation (which includes the ASCII symbols
 * $+<=>^`|~) or general category P*. */
static bool bert_is_punct(uint32_t cp) {
    if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126))
        return true;
    return cp >= 0x80 && uc_class(cp) == UC_PUNCT;
}

/* BertNormalizer's is_chinese_char, with the ranges of the Rust source (which starts the
 * Extension C/D/E block at U+2B920 where BERT's Python has U+2B820). */
static bool bert_is_chinese(uint32_t cp) {
    return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x20000 && cp <= 0x2a6df) ||
           (cp >= 0x2a700 && cp <= 0x2b73f) || (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b920 && cp <= 0x2ceaf) ||
           (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

/* Regex \w as the added-token single_word check uses it (approximation: letters, numbers,
 * nonspacing marks and '_'; spacing marks and Join_Control are left out). */
static bool uc_is_word(uint32_t cp) {
    int k = uc_class(cp);
    return k == UC_LETTER || k == UC_NUMBER || k == UC_MARK || cp == '_';
}

/* One-to-one lowercase mapping (U+0130 is handled by the caller). */
static uint32_t uc_tolower(uint32_t cp) {
    if (cp < 0x80) return cp - 'A' < 26 ? cp + 32 : cp;
    size_t n = sizeof uc_lower_runs / sizeof uc_lower_runs[0];
    if (cp < uc_lower_runs[0].first) return cp;
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (uc_lower_runs[mid].first <= cp) lo = mid;
        else hi = mid;
    }
    const struct uc_lower_run *r = &uc_lower_runs[lo];
    uint32_t d = cp - r->first;
    if (d % r->stride == 0 && d / r->stride < r->count) return (uint32_t)((int32_t)cp + r->delta);
    return cp;
}

/* Canonical decomposition of cp into out[0..4); returns the count (1 if cp has none in our
 * coverage). */
static int uc_nfd(uint32_t cp, uint32_t *out) {
    if (cp - 0xac00 < 11172) { /* Hangul syllable: L V [T] (Unicode Standard, section 3.12) */
        uint32_t s = cp - 0xac00, tr = s % 28;
        out[0] = 0x1100 + s / 588;
        out[1] = 0x1161 + (s % 588) / 28;
        if (!tr) return 2;
        out[2] = 0x11a7 + tr;
        return 3;
    }
    out[0] = cp;
    size_t lo = 0, hi = sizeof uc_nfd_table / sizeof uc_nfd_table[0];
    if (cp < (uint32_t)(uc_nfd_table[0] >> 42) || cp > (uint32_t)(uc_nfd_table[hi - 1] >> 42)) return 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        uint32_t c = (uint32_t)(uc_nfd_table[mid] >> 42);
        if (c == cp) {
            uint64_t e = uc_nfd_table[mid];
            int n = 0;
            out[n++] = (uint32_t)(e >> 21) & 0x1fffff;
            for (int sh = 14; sh >= 0; sh -= 7)
                if ((e >> sh) & 0x7f) out[n++] = uc_nfd_tail[((e >> sh) & 0x7f) - 1];
            return n;
        }
        if (c < cp) lo = mid + 1;
        else hi = mid;
    }
    return 1;
}

/* ==== UTF-8 ==== */

/* Decodes one UTF-8 sequence at s[0..n); returns its length (1-4) and sets *cp, or returns 0
 * for anything invalid (truncated, overlong, surrogate, above U+10FFFF). */
static int utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    int len;
    uint32_t v, min;
    if ((c & 0xe0) == 0xc0) { len = 2; v = c & 0x1f; min = 0x80; }
    else if ((c & 0xf0) == 0xe0) { len = 3; v = c & 0x0f; min = 0x800; }
    else if ((c & 0xf8) == 0xf0) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return len;
}

static int utf8_encode(uint32_t cp, uint8_t *o) {
    if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { o[0] = (uint8_t)(0xc0 | (cp >> 6)); o[1] = (uint8_t)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xe0 | (cp >> 12)); o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (uint8_t)(0xf0 | (cp >> 18)); o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

/* Returns the byte index of the first invalid sequence in s[0..n), or n if all is valid. */
static size_t utf8_check(const uint8_t *s, size_t n) {
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        int l = utf8_decode(s + i, n - i, &cp);
        if (!l) return i;
        i += (size_t)l;
    }
    return n;
}

static bool is_cont(uint8_t b) { return (b & 0xc0) == 0x80; }

/* ==== Hash tables ==== */

/* String -> int32 table, open addressing with linear probing, FNV-1a hashes. Keys live in
 * the tokenizer's arena (offset + length), so the arena may grow while the table fills. The
 * capacity is fixed at creation to at least twice the number of keys: there is always an
 * empty slot and probes stay short. */
typedef struct {
    uint32_t hash, koff, klen;
    int32_t val; /* -1: empty slot */
} str_slot;

typedef struct {
    str_slot *slots;
    uint32_t mask;
} str_table;

#define FNV_BASIS 2166136261u

static uint32_t fnv1a(uint32_t h, const void *p, size_t n) {
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 16777619u;
    return h;
}

static bool mem_eq(const void *a, const void *b, size_t n) { return n == 0 || memcmp(a, b, n) == 0; }

static pd_status strtab_init(str_table *tb, size_t nkeys) {
    size_t cap = 16;
    while (cap < 2 * nkeys) {
        if (cap > ((size_t)1 << 30)) return PD_ERR_TOO_LARGE;
        cap *= 2;
    }
    tb->slots = malloc(cap * sizeof *tb->slots);
    if (!tb->slots) return PD_ERR_NOMEM;
    for (size_t i = 0; i < cap; i++) tb->slots[i].val = -1;
    tb->mask = (uint32_t)(cap - 1);
    return PD_OK;
}

/* Looks up the key p1[0..n1) ++ p2[0..n2) (two parts so WordPiece can look up "##" + piece
 * without building the string). Returns the value or -1. */
static int32_t strtab_get2(const str_table *tb, const char *arena, const void *p1, size_t n1, const void *p2,
                           size_t n2) {
    if (!tb->slots) return -1;
    uint32_t h = fnv1a(fnv1a(FNV_BASIS, p1, n1), p2, n2);
    for (uint32_t i = h & tb->mask;; i = (i + 1) & tb->mask) {
        const str_slot *s = &tb->slots[i];
        if (s->val < 0) return -1;
        if (s->hash == h && s->klen == n1 + n2 && mem_eq(arena + s->koff, p1, n1) &&
            mem_eq(arena + s->koff + n1, p2, n2))
            return s->val;
    }
}

/* Inserts or overwrites key -> val (a later duplicate wins, as in a Rust HashMap insert). The
 * table must have been sized for all keys by strtab_init. */
static void strtab_put(str_table *tb, const char *arena, uint32_t koff, uint32_t klen, int32_t val) {
    uint32_t h = fnv1a(FNV_BASIS, arena + koff, klen);
    for (uint32_t i = h & tb->mask;; i = (i + 1) & tb->mask) {
        str_slot *s = &tb->slots[i];
        if (s->val < 0 || (s->hash == h && s->klen == klen && mem_eq(arena + s->koff, arena + koff, klen))) {
            s->hash = h;
            s->koff = koff;
            s->klen = klen;
            s->val = val;
            return;
        }
    }
}

/* BPE merges: (left id, right id) -> (rank, merged id), same scheme with a 64-bit mix. */
typedef struct {
    uint64_t key;
    int32_t rank; /* -1: empty slot */
    int32_t id;
} pair_slot;

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* ==== The tokenizer object ==== */

enum { NORM_CLEAN, NORM_CHINESE, NORM_NFD, NORM_STRIP, NORM_LOWER };
enum { PRE_NONE, PRE_BERT, PRE_BYTELEVEL, PRE_WHITESPACE, PRE_WS_SPLIT };
enum { TPL_A, TPL_B, TPL_SPECIAL };

typedef struct {
    uint32_t off, len;   /* content in the arena */
    uint32_t noff, nlen; /* content after the normalizer (matched when normalized) */
    int32_t id;
    bool single_word, lstrip, rstrip, normalized, special;
} added_tok;

/* Added tokens of one kind (raw or normalized) bucketed by first byte, longest first: at a
 * given position the first hit in a bucket is the leftmost-longest match. */
typedef struct {
    int32_t start[257]; /* items[start[b] .. start[b+1]) begin with byte b */
    int32_t *items;     /* indices into pd_tokenizer.added */
    int n;
} added_set;

typedef struct {
    uint8_t kind; /* TPL_* */
    int32_t type_id;
    int first, n; /* TPL_SPECIAL: ids tpl_ids[first .. first+n) */
} tpl_piece;

struct pd_tokenizer {
    pd_tok_kind kind;

    char *arena; /* every string: vocab tokens, added tokens, WordPiece prefix */
    size_t arena_len, arena_cap;

    int32_t n_ids;    /* largest id + 1 */
    uint32_t *id_off; /* (n_ids) id -> text shown by id_to_token (added content wins) */
    int32_t *id_len;  /* (n_ids) -1 when no token has this id */
    str_table vocab;  /* model vocabulary: text -> id */
    size_t max_tok_len;

    int norm[NORM_STEPS_MAX]; /* NORM_* steps applied in order to every character */
    int n_norm;
    bool norm_lower;

    int pre; /* PRE_* */
    bool bl_add_prefix_space, bl_use_regex;

    int32_t unk_id;                 /* WordPiece: required; BPE: -1 when there is none */
    uint32_t wp_prefix_off, wp_prefix_len;
    int wp_max_chars;

    pair_slot *merges; /* BPE */
    uint32_t merges_mask;
    bool byte_level, bpe_fuse_unk, bpe_ignore_merges;
    int32_t byte_id[256];      /* id of each byte's byte-level character, -1 if absent */
    uint16_t byte_char[256];   /* GPT-2 bytes_to_unicode */

    added_tok *added;
    int n_added;
    str_table added_text; /* content -> id */
    added_set raw_set, norm_set;

    tpl_piece single[TPL_MAX], pair[TPL_MAX];
    int n_single, n_pair;
    int32_t tpl_ids[TPL_IDS_MAX];
    int n_tpl_ids;
    bool trim_offsets, pp_add_prefix_space;

    int32_t pad_id;
};

void pd_tokenizer_free(pd_tokenizer *t) {
    if (!t) return;
    free(t->arena);
    free(t->id_off);
    free(t->id_len);
    free(t->vocab.slots);
    free(t->merges);
    free(t->added);
    free(t->added_text.slots);
    free(t->raw_set.items);
    free(t->norm_set.items);
    free(t);
}

static pd_tokenizer *tok_new(void) {
    pd_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->unk_id = -1;
    t->pad_id = -1;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    return t;
}

/* Appends s[0..n) plus a NUL to the arena; *off gets its offset. */
static pd_status arena_add(pd_tokenizer *t, const void *s, size_t n, uint32_t *off) {
    if (t->arena_len + n + 1 > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap : 4096;
        while (cap < t->arena_len + n + 1) cap *= 2;
        if (cap > UINT32_MAX) return PD_ERR_TOO_LARGE;
        char *a = realloc(t->arena, cap);
        if (!a) return PD_ERR_NOMEM;
        t->arena = a;
        t->arena_cap = cap;
    }
    if (n) memcpy(t->arena + t->arena_len, s, n);
    t->arena[t->arena_len + n] = 0;
    *off = (uint32_t)t->arena_len;
    t->arena_len += n + 1;
    return PD_OK;
}

/* Allocates the id -> text arrays for ids [0, n_ids). */
static pd_status ids_init(pd_tokenizer *t, int32_t n_ids) {
    t->n_ids = n_ids;
    t->id_off = calloc((size_t)n_ids + 1, sizeof *t->id_off);
    t->id_len = malloc(((size_t)n_ids + 1) * sizeof *t->id_len);
    if (!t->id_off || !t->id_len) return PD_ERR_NOMEM;
    for (int32_t i = 0; i < n_ids; i++) t->id_len[i] = -1;
    return PD_OK;
}

/* Adds one model vocabulary entry. */
static pd_status vocab_add(pd_tokenizer *t, const char *s, size_t n, int32_t id) {
    uint32_t off;
    pd_status st = arena_add(t, s, n, &off);
    if (st) return st;
    strtab_put(&t->vocab, t->arena, off, (uint32_t)n, id);
    t->id_off[id] = off;
    t->id_len[id] = (int32_t)n;
    if (n > t->max_tok_len) t->max_tok_len = n;
    return PD_OK;
}

static int32_t vocab_get(const pd_tokenizer *t, const char *s, size_t n) {
    return strtab_get2(&t->vocab, t->arena, NULL, 0, s, n);
}

/* ==== Normalization ==== */

/* Runs the normalizer steps on one code point; writes the result (0..NORM_MAX code points)
 * to out and returns the count. The steps are all character-local, so this is exact. */
static int norm_char(const pd_tokenizer *t, uint32_t cp, uint32_t *out) {
    if (cp >= 0x20 && cp < 0x7f) { /* printable ASCII: only lowercasing can change it */
        out[0] = t->norm_lower && cp - 'A' < 26 ? cp + 32 : cp;
        return 1;
    }
    uint32_t buf[2][NORM_MAX];
    int n = 1, cur = 0;
    buf[0][0] = cp;
    for (int s = 0; s < t->n_norm; s++) {
        const uint32_t *src = buf[cur];
        uint32_t *dst = buf[cur ^ 1];
        int m = 0;
        for (int i = 0; i < n; i++) {
            uint32_t c = src[i];
            PD_ASSERT(m + 4 <= NORM_MAX); /* load-time check bounds the expansion */
            switch (t->norm[s]) {
            case NORM_CLEAN:
                if (c == 0 || c == 0xfffd || bert_is_control(c)) break;
                dst[m++] = bert_is_space(c) ? ' ' : c;
                break;
            case NORM_CHINESE:
                if (bert_is_chinese(c)) {
                    dst[m++] = ' ';
                    dst[m++] = c;
                    dst[m++] = ' ';
                } else {
                    dst[m++] = c;
                }
                break;
            case NORM_NFD: m += uc_nfd(c, dst + m); break;
            case NORM_STRIP:
                if (uc_class(c) != UC_MARK) dst[m++] = c;
                break;
            case NORM_LOWER:
                if (c == 0x130) {
                    dst[m++] = 'i';
                    dst[m++] = 0x307;
                } else {
                    dst[m++] = uc_tolower(c);
                }
                break;
            default: PD_ASSERT(0);
            }
        }
        n = m;
        cur ^= 1;
    }
    memcpy(out, buf[cur], (size_t)n * sizeof *out);
    return n;
}

/* ==== Per-call state ==== */

/* A byte string with, for every byte, the original range [s, e) of the character it came
 * from. */
typedef struct {
    const uint8_t *b;
    const int32_t *s, *e;
} span;

typedef struct {
    size_t a, b;
    int32_t id; /* -1: text to tokenize, else an added token */
} seg;

typedef struct {
    int32_t id, prev, next; /* id -1: merged into its left neighbour */
    uint32_t u0, u1;        /* bytes [u0, u1) of the word */
} bpe_sym;

typedef struct {
    int32_t rank, pos, id;
} bpe_cand;

typedef struct {
    const pd_tokenizer *t;
    const uint8_t *text;
    pd_tokens *out;
    uint8_t *nb; /* normalized piece, with its per-byte origins ns/ne */
    int32_t *ns, *ne;
    size_t nn, ncap;
    uint8_t *wb; /* ByteLevel: piece with the prefix space */
    int32_t *ws, *we;
    size_t wcap;
    seg *rseg, *nseg; /* added-token splits of the raw text and of one normalized piece */
    size_t rcap, ncapseg;
    bpe_sym *sym;
    size_t symcap;
    bpe_cand *heap;
    size_t heapcap;
    uint8_t *key;
    size_t keycap;
    int32_t word; /* index of the current pre-tokenized word, for pd_tokens.word */
} tok_ctx;

/* realloc for n elements of size sz, with overflow check. */
static void *realloc_n(void *p, size_t n, size_t sz) {
    if (n && sz > SIZE_MAX / n) return NULL;
    return realloc(p, n * sz);
}

static size_t grow_cap(size_t cap, size_t need) {
    size_t c = cap ? cap : 256;
    while (c < need) c *= 2;
    return c;
}

#define GROW(p, cap, need)                                                  \
    do {                                                                    \
        if ((need) > (cap)) {                                               \
            size_t nc_ = grow_cap((cap), (need));                           \
            void *q_ = realloc_n((p), nc_, sizeof *(p));                    \
            if (!q_) return PD_ERR_NOMEM;                                   \
            (p) = q_;                                                       \
            (cap) = nc_;                                                    \
        }                                                                   \
    } while (0)

static pd_status tokens_reserve(pd_tokens *o, int need) {
    if (need <= o->cap) return PD_OK;
    int nc = o->cap > 0 ? o->cap : 64;
    while (nc < need) {
        if (nc > INT_MAX / 2) return PD_ERR_NOMEM;
        nc *= 2;
    }
    int32_t *p = realloc_n(o->ids, (size_t)nc, sizeof *p);
    if (!p) return PD_ERR_NOMEM;
    o->ids = p;
    p = realloc_n(o->start, (size_t)nc, sizeof *p);
    if (!p) return PD_ERR_NOMEM;
    o->start = p;
    p = realloc_n(o->end, (size_t)nc, sizeof *p);
    if (!p) return PD_ERR_NOMEM;
    o->end = p;
    p = realloc_n(o->word, (size_t)nc, sizeof *p);
    if (!p) return PD_ERR_NOMEM;
    o->word = p;
    o->cap = nc;
    return PD_OK;
}

static pd_status emit(tok_ctx *c, int32_t id, int32_t s, int32_t e) {
    pd_tokens *o = c->out;
    if (o->n == INT_MAX) return PD_ERR_NOMEM;
    if (o->n >= o->cap) {
        pd_status st = tokens_reserve(o, o->n + 1);
        if (st) return st;
    }
    o->ids[o->n] = id;
    o->start[o->n] = s;
    o->end[o->n] = e;
    o->word[o->n] = c->word;
    o->n++;
    return PD_OK;
}

/* An added (special) token is a word of its own. */
static pd_status emit_word(tok_ctx *c, int32_t id, int32_t s, int32_t e) {
    c->word++;
    pd_status st = emit(c, id, s, e);
    c->word++;
    return st;
}

/* Normalizes the original text [a, b) into c->nb; every byte of each output character gets
 * the original range of the input character it came from. */
static pd_status normalize_piece(tok_ctx *c, size_t a, size_t b) {
    const pd_tokenizer *t = c->t;
    c->nn = 0;
    size_t cap = c->ncap;
    for (size_t i = a; i < b;) {
        if (c->nn + 4 * NORM_MAX > cap) {
            size_t nc = grow_cap(cap, c->nn + 4 * NORM_MAX + (b - i));
            uint8_t *nb = realloc_n(c->nb, nc, 1);
            if (!nb) return PD_ERR_NOMEM;
            c->nb = nb;
            int32_t *p = realloc_n(c->ns, nc, sizeof *p);
            if (!p) return PD_ERR_NOMEM;
            c->ns = p;
            p = realloc_n(c->ne, nc, sizeof *p);
            if (!p) return PD_ERR_NOMEM;
            c->ne = p;
            c->ncap = cap = nc;
        }
        uint32_t cp, o[NORM_MAX];
        int l = utf8_decode(c->text + i, b - i, &cp);
        PD_ASSERT(l > 0); /* validated, and pieces start on character boundaries */
        int32_t s = (int32_t)i, e = (int32_t)(i + (size_t)l);
        int k = t->n_norm ? norm_char(t, cp, o) : 1;
        if (!t->n_norm || (k == 1 && o[0] == cp)) {
            memcpy(c->nb + c->nn, c->text + i, (size_t)l);
            for (int j = 0; j < l; j++, c->nn++) {
                c->ns[c->nn] = s;
                c->ne[c->nn] = e;
            }
        } else {
            for (int q = 0; q < k; q++) {
                int m = utf8_encode(o[q], c->nb + c->nn);
                for (int j = 0; j < m; j++, c->nn++) {
                    c->ns[c->nn] = s;
                    c->ne[c->nn] = e;
                }
            }
        }
        i += (size_t)l;
    }
    return PD_OK;
}

/* ==== Added tokens ==== */

/* Code point of the character ending just before byte i of s (i > 0). */
static uint32_t prev_char(const uint8_t *s, size_t lo, size_t i, size_t *start) {
    size_t j = i - 1;
    while (j > lo && is_cont(s[j])) j--;
    uint32_t cp = 0;
    if (!utf8_decode(s + j, i - j, &cp)) cp = 0;
    if (start) *start = j;
    return cp;
}

/* Splits s[a..b) on the added tokens of set, as AddedVocabulary::find_matches does:
 * leftmost-longest matches, single_word matches dropped when glued to a word character,
 * lstrip/rstrip widening the match over adjacent whitespace. Splits go to *out. One
 * difference: after a match widened by rstrip the search resumes after the whitespace it
 * swallowed (HF resumes right after the token), so splits never overlap. */
static pd_status find_added(const pd_tokenizer *t, const added_set *set, bool normalized, const uint8_t *s,
                            size_t a, size_t b, seg **out, size_t *cap, size_t *n) {
    *n = 0;
    size_t start_off = a, i = a;
    while (i < b) {
        int32_t lo = set->start[s[i]], hi = set->start[s[i] + 1];
        const added_tok *hit = NULL;
        uint32_t hlen = 0;
        for (int32_t k = lo; k < hi; k++) {
            const added_tok *at = &t->added[set->items[k]];
            uint32_t off = normalized ? at->noff : at->off, len = normalized ? at->nlen : at->len;
            if (len <= b - i && memcmp(t->arena + off, s + i, len) == 0) {
                hit = at;
                hlen = len;
                break;
            }
        }
        if (!hit) {
            i++;
            continue;
        }
        size_t ms = i, me = i + hlen;
        uint32_t cp;
        if (hit->single_word) {
            bool glued = ms > a && uc_is_word(prev_char(s, a, ms, NULL));
            if (!glued && me < b && utf8_decode(s + me, b - me, &cp) && uc_is_word(cp)) glued = true;
            if (glued) {
                i = me;
                continue;
            }
        }
        if (hit->lstrip) {
            size_t p;
            while (ms > start_off && uc_is_space(prev_char(s, a, ms, &p))) ms = p;
        }
        if (hit->rstrip) {
            int l;
            while (me < b && (l = utf8_decode(s + me, b - me, &cp)) > 0 && uc_is_space(cp)) me += (size_t)l;
        }
        GROW(*out, *cap, *n + 2);
        if (start_off < ms) (*out)[(*n)++] = (seg){start_off, ms, -1};
        (*out)[(*n)++] = (seg){ms, me, hit->id};
        start_off = i = me;
    }
    GROW(*out, *cap, *n + 1);
    if (start_off < b) (*out)[(*n)++] = (seg){start_off, b, -1};
    return PD_OK;
}

/* ==== Models ==== */

/* WordPiece on the word w[a..b): greedy longest-match-first, continuation pieces looked up
 * with the prefix ("##"); a word longer than max_input_chars_per_word, or with a part no
 * piece matches, becomes one unk token over the whole word (models/wordpiece/mod.rs). */
static pd_status wp_word(tok_ctx *c, span w, size_t a, size_t b) {
    const pd_tokenizer *t = c->t;
    c->word++;
    int32_t s0 = w.s[a], e0 = w.e[b - 1];
    size_t nch = 0;
    for (size_t i = a; i < b; i++) nch += !is_cont(w.b[i]);
    if (nch > (size_t)t->wp_max_chars) return emit(c, t->unk_id, s0, e0);
    int mark = c->out->n;
    const char *pre = t->arena + t->wp_prefix_off;
    for (size_t pos = a; pos < b;) {
        size_t end = b;
        /* no vocabulary entry is longer than max_tok_len bytes: skip hopeless lookups */
        if (end - pos > t->max_tok_len) {
            end = pos + t->max_tok_len;
            while (end > pos && is_cont(w.b[end])) end--;
        }
        int32_t id = -1;
        while (end > pos) {
            id = pos > a ? strtab_get2(&t->vocab, t->arena, pre, t->wp_prefix_len, w.b + pos, end - pos)
                         : strtab_get2(&t->vocab, t->arena, NULL, 0, w.b + pos, end - pos);
            if (id >= 0) break;
            do end--;
            while (end > pos && is_cont(w.b[end]));
        }
        if (id < 0) {
            c->out->n = mark;
            return emit(c, t->unk_id, s0, e0);
        }
        pd_status st = emit(c, id, w.s[pos], w.e[end - 1]);
        if (st) return st;
        pos = end;
    }
    return PD_OK;
}

static const pair_slot *merge_find(const pd_tokenizer *t, int32_t l, int32_t r) {
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    for (uint32_t i = (uint32_t)mix64(key) & t->merges_mask;; i = (i + 1) & t->merges_mask) {
        const pair_slot *s = &t->merges[i];
        if (s->rank < 0) return NULL;
        if (s->key == key) return s;
    }
}

static bool cand_less(bpe_cand x, bpe_cand y) { return x.rank < y.rank || (x.rank == y.rank && x.pos < y.pos); }

static void heap_push(bpe_cand *h, size_t *n, bpe_cand v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(v, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static bpe_cand heap_pop(bpe_cand *h, size_t *n) {
    bpe_cand top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < *n && cand_less(h[l], last)) m = l;
        if (l + 1 < *n && cand_less(h[l + 1], m == i ? last : h[l])) m = l + 1;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n) h[i] = last;
    return top;
}

/* Queues the merge of symbol pos with its right neighbour, if the merges table has it. */
static void bpe_queue(tok_ctx *c, size_t *nh, int32_t pos) {
    const bpe_sym *s = &c->sym[pos];
    if (s->next < 0) return;
    const pair_slot *m = merge_find(c->t, s->id, c->sym[s->next].id);
    if (m) heap_push(c->heap, nh, (bpe_cand){m->rank, pos, m->id});
}

/* Emits the BPE token made of word bytes [u0, u1). With trim_offsets, leading and trailing
 * spaces ('Ġ') leave the offsets as processors/byte_level.rs process_offsets does, including
 * its rule that keeps one leading space on the first token when add_prefix_space is set. */
static pd_status bpe_emit(tok_ctx *c, span w, uint32_t u0, uint32_t u1, int32_t id) {
    const pd_tokenizer *t = c->t;
    int32_t s = w.s[u0], e = w.e[u1 - 1];
    if (t->trim_offsets) {
        uint32_t lead = 0, trail = 0;
        while (u0 + lead < u1 && w.b[u0 + lead] == ' ') lead++;
        while (trail < u1 - u0 && w.b[u1 - 1 - trail] == ' ') trail++;
        if (lead == 1 && t->pp_add_prefix_space && (c->out->n == 0 || s == 0)) lead = 0;
        if (lead) s = u0 + lead < u1 ? w.s[u0 + lead] : e;
        if (trail) {
            int32_t ne = trail < u1 - u0 ? w.e[u1 - 1 - trail] : s;
            e = ne > s ? ne : s;
        }
        if (s > e) s = e;
    }
    return emit(c, id, s, e);
}

/* BPE on the word w[a..b) (models/bpe/model.rs merge_word + word.rs merge_all): one symbol
 * per byte (byte-level) or per character, unknown symbols become unk (fused if fuse_unk) or
 * are dropped when there is no unk token, then the lowest-ranked adjacent pair is merged
 * until none is left, leftmost first among equal ranks. A binary heap of candidate merges
 * (stale entries skipped on pop) keeps this O(n log n) per word. */
static pd_status bpe_word(tok_ctx *c, span w, size_t a, size_t b) {
    const pd_tokenizer *t = c->t;
    c->word++;
    size_t n = b - a;
    if (n > INT32_MAX / 4) return PD_ERR_TOO_LARGE;
    if (t->bpe_ignore_merges) { /* a word already in the vocabulary is kept whole */
        GROW(c->key, c->keycap, 2 * n);
        size_t kn = 0;
        if (t->byte_level) {
            for (size_t i = a; i < b; i++) kn += (size_t)utf8_encode(t->byte_char[w.b[i]], c->key + kn);
        } else {
            memcpy(c->key, w.b + a, n);
            kn = n;
        }
        int32_t id = vocab_get(t, (const char *)c->key, kn);
        if (id >= 0) return bpe_emit(c, w, (uint32_t)a, (uint32_t)b, id);
    }
    GROW(c->sym, c->symcap, n);
    GROW(c->heap, c->heapcap, 3 * n + 1);
    int32_t ns = 0, open_unk = -1;
    for (size_t i = a; i < b;) {
        size_t l = 1;
        int32_t id;
        if (t->byte_level) {
            id = t->byte_id[w.b[i]];
        } else {
            while (i + l < b && is_cont(w.b[i + l])) l++;
            id = vocab_get(t, (const char *)w.b + i, l);
        }
        if (id >= 0) {
            c->sym[ns++] = (bpe_sym){id, -1, -1, (uint32_t)i, (uint32_t)(i + l)};
            open_unk = -1;
        } else if (t->unk_id >= 0) {
            if (open_unk >= 0 && t->bpe_fuse_unk) {
                c->sym[open_unk].u1 = (uint32_t)(i + l);
            } else {
                open_unk = ns;
                c->sym[ns++] = (bpe_sym){t->unk_id, -1, -1, (uint32_t)i, (uint32_t)(i + l)};
            }
        } /* else: HF drops a symbol it cannot represent */
        i += l;
    }
    if (!ns) return PD_OK;
    size_t nh = 0;
    for (int32_t i = 0; i < ns; i++) {
        c->sym[i].prev = i - 1;
        c->sym[i].next = i + 1 < ns ? i + 1 : -1;
    }
    if (t->merges)
        for (int32_t i = 0; i + 1 < ns; i++) bpe_queue(c, &nh, i);
    while (nh) {
        bpe_cand top = heap_pop(c->heap, &nh);
        bpe_sym *s = &c->sym[top.pos];
        if (s->id < 0 || s->next < 0) continue;
        bpe_sym *r = &c->sym[s->next];
        const pair_slot *m = merge_find(t, s->id, r->id);
        if (!m || m->id != top.id) continue; /* stale: one side changed since it was queued */
        s->id = top.id;
        s->u1 = r->u1;
        s->next = r->next;
        r->id = -1;
        if (s->next >= 0) c->sym[s->next].prev = top.pos;
        if (s->prev >= 0) bpe_queue(c, &nh, s->prev);
        bpe_queue(c, &nh, top.pos);
    }
    for (int32_t i = 0; i >= 0; i = c->sym[i].next) {
        pd_status st = bpe_emit(c, w, c->sym[i].u0, c->sym[i].u1, c->sym[i].id);
        if (st) return st;
    }
    return PD_OK;
}

static pd_status model_word(tok_ctx *c, span w, size_t a, size_t b) {
    if (a >= b) return PD_OK;
    return c->t->kind == PD_TOK_WORDPIECE ? wp_word(c, w, a, b) : bpe_word(c, w, a, b);
}

/* ==== Pre-tokenizers ==== */

/* Whitespace-delimited pre-tokenizers: BertPreTokenizer (split on whitespace, removed, then
 * every punctuation character on its own), WhitespaceSplit, and Whitespace (\w+|[^\w\s]+). */
static pd_status pre_split(tok_ctx *c, span w, size_t a, size_t b) {
    int pre = c->t->pre;
    size_t start = SIZE_MAX;
    int kind = 0;
    pd_status st;
    for (size_t i = a; i < b;) {
        uint32_t cp;
        int l = utf8_decode(w.b + i, b - i, &cp);
        PD_ASSERT(l > 0);
        if (uc_is_space(cp)) {
            if (start != SIZE_MAX && (st = model_word(c, w, start, i))) return st;
            start = SIZE_MAX;
        } else if (pre == PRE_BERT && bert_is_punct(cp)) {
            if (start != SIZE_MAX && (st = model_word(c, w, start, i))) return st;
            start = SIZE_MAX;
            if ((st = model_word(c, w, i, i + (size_t)l))) return st;
        } else {
            int k = pre == PRE_WHITESPACE ? (uc_is_word(cp) ? 1 : 2) : 0;
            if (start != SIZE_MAX && k != kind) {
                if ((st = model_word(c, w, start, i))) return st;
                start = SIZE_MAX;
            }
            if (start == SIZE_MAX) start = i;
            kind = k;
        }
        i += (size_t)l;
    }
    return start != SIZE_MAX ? model_word(c, w, start, b) : PD_OK;
}

enum { BL_SPACE, BL_LETTER, BL_NUMBER, BL_OTHER };

static int bl_kind(uint32_t cp) {
    if (uc_is_space(cp)) return BL_SPACE;
    int k = uc_class(cp);
    return k == UC_LETTER ? BL_LETTER : k == UC_NUMBER ? BL_NUMBER : BL_OTHER;
}

/* Length of a GPT-2 contraction ('s 't 're 've 'm 'll 'd) at s[0..n), 0 if none. */
static size_t bl_contraction(const uint8_t *s, size_t n) {
    if (n < 2 || s[0] != '\'') return 0;
    if (s[1] == 's' || s[1] == 't' || s[1] == 'm' || s[1] == 'd') return 2;
    if (n >= 3 && ((s[1] == 'r' && s[2] == 'e') || (s[1] == 'v' && s[2] == 'e') || (s[1] == 'l' && s[2] == 'l')))
        return 3;
    return 0;
}

/* ByteLevel pre-tokenizer: optional prefix space, then the GPT-2 split
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * by hand: at each position the first alternative that matches wins, each run is greedy, and
 * \s+(?!\S) backs off one character so the last space of a run goes to the next word. The
 * bytes of each piece then go to BPE one by one (the byte-to-character mapping is folded
 * into byte_id). */
static pd_status pre_bytelevel(tok_ctx *c, span w, size_t a, size_t b) {
    const pd_tokenizer *t = c->t;
    if (t->bl_add_prefix_space && w.b[a] != ' ') {
        size_t n = b - a + 1;
        if (n > c->wcap) {
            size_t nc = grow_cap(c->wcap, n);
            uint8_t *wb = realloc_n(c->wb, nc, 1);
            if (!wb) return PD_ERR_NOMEM;
            c->wb = wb;
            int32_t *p = realloc_n(c->ws, nc, sizeof *p);
            if (!p) return PD_ERR_NOMEM;
            c->ws = p;
            p = realloc_n(c->we, nc, sizeof *p);
            if (!p) return PD_ERR_NOMEM;
            c->we = p;
            c->wcap = nc;
        }
        /* the added space stands for nothing in the original: an empty range before the
         * first character */
        c->wb[0] = ' ';
        c->ws[0] = c->we[0] = w.s[a];
        memcpy(c->wb + 1, w.b + a, b - a);
        memcpy(c->ws + 1, w.s + a, (b - a) * sizeof *c->ws);
        memcpy(c->we + 1, w.e + a, (b - a) * sizeof *c->we);
        w = (span){c->wb, c->ws, c->we};
        a = 0;
        b = n;
    }
    if (!t->bl_use_regex) return bpe_word(c, w, a, b);
    for (size_t i = a; i < b;) {
        uint32_t cp, cp2 = 0;
        int l = utf8_decode(w.b + i, b - i, &cp), l2 = 0;
        PD_ASSERT(l > 0);
        size_t j = i + bl_contraction(w.b + i, b - i);
        if (j == i) {
            if (i + (size_t)l < b) l2 = utf8_decode(w.b + i + l, b - i - (size_t)l, &cp2);
            int k = bl_kind(cp);
            size_t p = i + (size_t)l;
            if (cp == ' ' && l2 && bl_kind(cp2) != BL_SPACE) { /* " ?X+" */
                k = bl_kind(cp2);
                p += (size_t)l2;
            }
            if (k != BL_SPACE) {
                while (p < b) {
                    uint32_t q;
                    int ql = utf8_decode(w.b + p, b - p, &q);
                    if (bl_kind(q) != k) break;
                    p += (size_t)ql;
                }
                j = p;
            } else {
                size_t last = i; /* start of the last whitespace character of the run */
                while (p < b) {
                    uint32_t q;
                    int ql = utf8_decode(w.b + p, b - p, &q);
                    if (bl_kind(q) != BL_SPACE) break;
                    last = p;
                    p += (size_t)ql;
                }
                j = (p < b && last > i) ? last : p;
            }
        }
        pd_status st = bpe_word(c, w, i, j);
        if (st) return st;
        i = j;
    }
    return PD_OK;
}

static pd_status pretokenize(tok_ctx *c, span w, size_t a, size_t b) {
    if (a >= b) return PD_OK;
    switch (c->t->pre) {
    case PRE_NONE: return model_word(c, w, a, b);
    case PRE_BYTELEVEL: return pre_bytelevel(c, w, a, b);
    default: return pre_split(c, w, a, b);
    }
}

/* ==== Tokenize ==== */

/* Normalizes the original text [a, b) (no raw added token inside), extracts the normalized
 * added tokens, and pre-tokenizes + models the rest. */
static pd_status tokenize_piece(tok_ctx *c, size_t a, size_t b) {
    const pd_tokenizer *t = c->t;
    pd_status st = normalize_piece(c, a, b);
    if (st || !c->nn) return st;
    span w = {c->nb, c->ns, c->ne};
    if (!t->norm_set.n) return pretokenize(c, w, 0, c->nn);
    size_t n;
    if ((st = find_added(t, &t->norm_set, true, c->nb, 0, c->nn, &c->nseg, &c->ncapseg, &n))) return st;
    for (size_t i = 0; i < n && !st; i++) {
        seg g = c->nseg[i];
        st = g.id >= 0 ? emit_word(c, g.id, c->ns[g.a], c->ne[g.b - 1]) : pretokenize(c, w, g.a, g.b);
    }
    return st;
}

pd_status pd_tokenizer_tokenize(const pd_tokenizer *t, const char *text, size_t len, pd_tokens *out, char *err,
                                size_t errlen) {
    if (!t || !out || (!text && len)) return pd_err(err, errlen, PD_ERR_INVALID, "tokenize: NULL argument");
    out->n = 0;
    if (len > (size_t)INT32_MAX - 8)
        return pd_err(err, errlen, PD_ERR_TOO_LARGE, "tokenize: text of %zu bytes is too long", len);
    const uint8_t *s = (const uint8_t *)text;
    size_t bad = utf8_check(s, len);
    if (bad < len) return pd_err(err, errlen, PD_ERR_INVALID, "text is not valid UTF-8 (byte %zu)", bad);
    tok_ctx c = {.t = t, .text = s, .out = out};
    pd_status st = PD_OK;
    if (!t->raw_set.n) {
        st = tokenize_piece(&c, 0, len);
    } else {
        size_t n;
        st = find_added(t, &t->raw_set, false, s, 0, len, &c.rseg, &c.rcap, &n);
        for (size_t i = 0; i < n && !st; i++) {
            seg g = c.rseg[i];
            st = g.id >= 0 ? emit_word(&c, g.id, (int32_t)g.a, (int32_t)g.b) : tokenize_piece(&c, g.a, g.b);
        }
    }
    free(c.nb);
    free(c.ns);
    free(c.ne);
    free(c.wb);
    free(c.ws);
    free(c.we);
    free(c.rseg);
    free(c.nseg);
    free(c.sym);
    free(c.heap);
    free(c.key);
    if (st) {
        out->n = 0;
        return pd_err(err, errlen, st, "tokenize: %s", st == PD_ERR_NOMEM ? "out of memory" : "word too long");
    }
    return PD_OK;
}

void pd_tokens_free(pd_tokens *t) {
    if (!t) return;
    free(t->ids);
    free(t->start);
    free(t->end);
    free(t->word);
    memset(t, 0, sizeof *t);
}

/* ==== Post-processing ==== */

int pd_tokenizer_num_special(const pd_tokenizer *t, int pair) {
    const tpl_piece *p = pair ? t->pair : t->single;
    int n = pair ? t->n_pair : t->n_single, k = 0;
    for (int i = 0; i < n; i++)
        if (p[i].kind == TPL_SPECIAL) k += p[i].n;
    return k;
}

int pd_tokenizer_assemble(const pd_tokenizer *t, const int32_t *a, int na, const int32_t *b, int nb, int32_t *ids,
                          int32_t *type_ids, int32_t *src, int32_t *idx) {
    const tpl_piece *p = nb >= 0 ? t->pair : t->single;
    int np = nb >= 0 ? t->n_pair : t->n_single, k = 0;
    for (int i = 0; i < np; i++) {
        if (p[i].kind == TPL_SPECIAL) {
            for (int j = 0; j < p[i].n; j++, k++) {
                ids[k] = t->tpl_ids[p[i].first + j];
                type_ids[k] = p[i].type_id;
                src[k] = -1;
                idx[k] = -1;
            }
            continue;
        }
        bool is_b = p[i].kind == TPL_B;
        const int32_t *x = is_b ? b : a;
        int nx = is_b ? nb : na;
        for (int j = 0; j < nx; j++, k++) {
            ids[k] = x[j];
            type_ids[k] = p[i].type_id;
            src[k] = is_b;
            idx[k] = j;
        }
    }
    return k;
}

/* ==== Accessors ==== */

pd_tok_kind pd_tokenizer_kind(const pd_tokenizer *t) { return t->kind; }
int pd_tokenizer_vocab_size(const pd_tokenizer *t) { return t->n_ids; }
int32_t pd_tokenizer_pad_id(const pd_tokenizer *t) { return t->pad_id >= 0 ? t->pad_id : 0; }

int32_t pd_tokenizer_token_to_id(const pd_tokenizer *t, const char *token) {
    size_t n = strlen(token);
    int32_t id = strtab_get2(&t->added_text, t->arena, NULL, 0, token, n);
    return id >= 0 ? id : vocab_get(t, token, n);
}

const char *pd_tokenizer_id_to_token(const pd_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_ids || t->id_len[id] < 0) return NULL;
    return t->arena + t->id_off[id];
}

/* ==== Building: shared by both loaders ==== */

/* Registers an added token (content s, flags) under id. */
static pd_status added_push(pd_tokenizer *t, const char *s, size_t n, int32_t id, bool single_word, bool lstrip,
                            bool rstrip, bool normalized, bool special) {
    added_tok *a = realloc_n(t->added, (size_t)t->n_added + 1, sizeof *a);
    if (!a) return PD_ERR_NOMEM;
    t->added = a;
    added_tok *at = &t->added[t->n_added++];
    memset(at, 0, sizeof *at);
    pd_status st = arena_add(t, s, n, &at->off);
    if (st) return st;
    at->len = (uint32_t)n;
    at->id = id;
    at->single_word = single_word;
    at->lstrip = lstrip;
    at->rstrip = rstrip;
    at->normalized = normalized;
    at->special = special;
    return PD_OK;
}

typedef struct {
    uint8_t first;
    uint32_t len;
    int32_t idx;
} added_key;

static int added_key_cmp(const void *x, const void *y) {
    const added_key *a = x, *b = y;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Builds one matching set from the added tokens with the given `normalized` flag. */
static pd_status added_set_build(pd_tokenizer *t, added_set *set, bool normalized) {
    added_key *keys = malloc(((size_t)t->n_added + 1) * sizeof *keys);
    set->items = malloc(((size_t)t->n_added + 1) * sizeof *set->items);
    if (!keys || !set->items) {
        free(keys);
        return PD_ERR_NOMEM;
    }
    int n = 0;
    for (int i = 0; i < t->n_added; i++) {
        const added_tok *at = &t->added[i];
        uint32_t len = normalized ? at->nlen : at->len, off = normalized ? at->noff : at->off;
        if (at->normalized != normalized || !len) continue;
        keys[n++] = (added_key){(uint8_t)t->arena[off], len, i};
    }
    qsort(keys, (size_t)n, sizeof *keys, added_key_cmp);
    memset(set->start, 0, sizeof set->start);
    for (int i = 0; i < n; i++) {
        set->items[i] = keys[i].idx;
        set->start[keys[i].first + 1]++;
    }
    for (int b = 0; b < 256; b++) set->start[b + 1] += set->start[b];
    set->n = n;
    free(keys);
    return PD_OK;
}

/* Final step of every loader: added-token tables (normalized contents go through the
 * normalizer, as AddedVocabulary::refresh_added_tokens does), id_to_token overrides, pad id,
 * sanity checks on the normalizer expansion. */
static pd_status tok_finish(pd_tokenizer *t, const char *file, char *err, size_t errlen) {
    pd_status st;
    int grow = 1;
    for (int i = 0; i < t->n_norm; i++) t->norm_lower |= t->norm[i] == NORM_LOWER;
    for (int i = 0; i < t->n_norm; i++) {
        int f = t->norm[i] == NORM_CHINESE ? 3 : t->norm[i] == NORM_NFD ? 4 : t->norm[i] == NORM_LOWER ? 2 : 1;
        grow *= f;
        if (grow > NORM_MAX - 4)
            return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: normalizer: sequence expands text too much", file);
    }
    if ((st = strtab_init(&t->added_text, (size_t)t->n_added))) return pd_err(err, errlen, st, "%s: out of memory", file);
    for (int i = 0; i < t->n_added; i++) {
        added_tok *at = &t->added[i];
        const char *s = t->arena + at->off;
        if (utf8_check((const uint8_t *)s, at->len) != at->len)
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: added token %d is not valid UTF-8", file, (int)at->id);
        strtab_put(&t->added_text, t->arena, at->off, at->len, at->id);
        t->id_off[at->id] = at->off;
        t->id_len[at->id] = (int32_t)at->len;
        if (!at->normalized) continue;
        /* normalized content, built in a local buffer then copied to the arena */
        size_t cap = (size_t)at->len * 4 * NORM_MAX + 1, n = 0;
        uint8_t *buf = malloc(cap);
        if (!buf) return pd_err(err, errlen, PD_ERR_NOMEM, "%s: out of memory", file);
        for (size_t j = 0; j < at->len;) {
            uint32_t cp, o[NORM_MAX];
            int l = utf8_decode((const uint8_t *)t->arena + at->off + j, at->len - j, &cp);
            int k = t->n_norm ? norm_char(t, cp, o) : (o[0] = cp, 1);
            for (int q = 0; q < k; q++) n += (size_t)utf8_encode(o[q], buf + n);
            j += (size_t)l;
        }
        st = arena_add(t, buf, n, &at->noff);
        free(buf);
        if (st) return pd_err(err, errlen, st, "%s: out of memory", file);
        at->nlen = (uint32_t)n;
    }
    if ((st = added_set_build(t, &t->raw_set, false)) || (st = added_set_build(t, &t->norm_set, true)))
        return pd_err(err, errlen, st, "%s: out of memory", file);
    if (t->pad_id < 0) {
        int32_t id = pd_tokenizer_token_to_id(t, "[PAD]");
        if (id < 0) id = pd_tokenizer_token_to_id(t, "<pad>");
        t->pad_id = id;
    }
    return PD_OK;
}

static pd_status tpl_add(pd_tokenizer *t, tpl_piece *tpl, int *n, int kind, int32_t type_id, const int32_t *ids,
                         int nids) {
    if (*n >= TPL_MAX || t->n_tpl_ids + nids > TPL_IDS_MAX) return PD_ERR_UNSUPPORTED;
    tpl_piece *p = &tpl[(*n)++];
    p->kind = (uint8_t)kind;
    p->type_id = type_id;
    p->first = t->n_tpl_ids;
    p->n = nids;
    for (int i = 0; i < nids; i++) t->tpl_ids[t->n_tpl_ids++] = ids[i];
    return PD_OK;
}

/* Templates of BertProcessing ([CLS] A [SEP] / [CLS] A [SEP] B [SEP], B part type 1) or
 * RobertaProcessing (<s> A </s> / <s> A </s> </s> B </s>, all type 0). */
static pd_status tpl_cls_sep(pd_tokenizer *t, int32_t cls, int32_t sep, bool roberta) {
    pd_status st;
    int32_t tb = roberta ? 0 : 1;
    t->n_single = t->n_pair = 0;
    if ((st = tpl_add(t, t->single, &t->n_single, TPL_SPECIAL, 0, &cls, 1)) ||
        (st = tpl_add(t, t->single, &t->n_single, TPL_A, 0, NULL, 0)) ||
        (st = tpl_add(t, t->single, &t->n_single, TPL_SPECIAL, 0, &sep, 1)) ||
        (st = tpl_add(t, t->pair, &t->n_pair, TPL_SPECIAL, 0, &cls, 1)) ||
        (st = tpl_add(t, t->pair, &t->n_pair, TPL_A, 0, NULL, 0)) ||
        (st = tpl_add(t, t->pair, &t->n_pair, TPL_SPECIAL, 0, &sep, 1)))
        return st;
    if (roberta && (st = tpl_add(t, t->pair, &t->n_pair, TPL_SPECIAL, 0, &sep, 1))) return st;
    if ((st = tpl_add(t, t->pair, &t->n_pair, TPL_B, tb, NULL, 0)) ||
        (st = tpl_add(t, t->pair, &t->n_pair, TPL_SPECIAL, tb, &sep, 1)))
        return st;
    return PD_OK;
}

/* pd_tokenizer_assemble's callers size their arrays as na + nb + num_special: a template
 * must hold A exactly once, and B exactly once in a pair template and never in a single one. */
static bool tpl_valid(const tpl_piece *p, int n, bool pair) {
    int na = 0, nb = 0;
    for (int i = 0; i < n; i++) {
        na += p[i].kind == TPL_A;
        nb += p[i].kind == TPL_B;
    }
    return na == 1 && nb == (pair ? 1 : 0);
}

/* No post-processor: A alone, or A then B with type ids 0 and 1. */
static void tpl_plain(pd_tokenizer *t) {
    t->n_single = t->n_pair = 0;
    tpl_add(t, t->single, &t->n_single, TPL_A, 0, NULL, 0);
    tpl_add(t, t->pair, &t->n_pair, TPL_A, 0, NULL, 0);
    tpl_add(t, t->pair, &t->n_pair, TPL_B, 1, NULL, 0);
}

/* ==== Loading tokenizer.json ==== */

static const cJSON *jget(const cJSON *o, const char *k) {
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

static bool jnull(const cJSON *v) { return !v || cJSON_IsNull(v); }

/* Optional boolean member: absent or null leaves *v; true/false set it; else an error. */
static pd_status jbool(const cJSON *o, const char *k, bool *v, const char *file, const char *ctx, char *err,
                       size_t errlen) {
    const cJSON *x = jget(o, k);
    if (jnull(x)) return PD_OK;
    if (!cJSON_IsBool(x)) return pd_err(err, errlen, PD_ERR_FORMAT, "%s: %s.%s: expected a boolean", file, ctx, k);
    *v = cJSON_IsTrue(x);
    return PD_OK;
}

/* An integer in [lo, hi] from a JSON number; false if it is not one. */
static bool jint(const cJSON *x, double lo, double hi, int32_t *v) {
    if (!cJSON_IsNumber(x)) return false;
    double d = x->valuedouble;
    if (!(d >= lo && d <= hi) || d != (double)(int64_t)d) return false;
    *v = (int32_t)d;
    return true;
}

/* Optional string member: absent or null gives NULL (and PD_OK); a non-string is an error. */
static pd_status jstr(const cJSON *o, const char *k, const char **v, const char *file, const char *ctx, char *err,
                      size_t errlen) {
    const cJSON *x = jget(o, k);
    *v = NULL;
    if (jnull(x)) return PD_OK;
    if (!cJSON_IsString(x)) return pd_err(err, errlen, PD_ERR_FORMAT, "%s: %s.%s: expected a string", file, ctx, k);
    *v = x->valuestring;
    return PD_OK;
}

static const char *jtype(const cJSON *o) {
    const cJSON *x = jget(o, "type");
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

static pd_status parse_normalizer(pd_tokenizer *t, const cJSON *n, int depth, const char *file, char *err,
                                  size_t errlen) {
    if (jnull(n)) return PD_OK;
    const char *type = jtype(n);
    if (!type) return pd_err(err, errlen, PD_ERR_FORMAT, "%s: normalizer: missing \"type\"", file);
    int steps[5], ns = 0;
    pd_status st;
    if (!strcmp(type, "BertNormalizer")) {
        bool clean = true, chinese = true, lower = true, strip;
        if ((st = jbool(n, "clean_text", &clean, file, "normalizer", err, errlen)) ||
            (st = jbool(n, "handle_chinese_chars", &chinese, file, "normalizer", err, errlen)) ||
            (st = jbool(n, "lowercase", &lower, file, "normalizer", err, errlen)))
            return st;
        strip = lower; /* strip_accents: null means "follow lowercase" */
        if ((st = jbool(n, "strip_accents", &strip, file, "normalizer", err, errlen))) return st;
        if (clean) steps[ns++] = NORM_CLEAN;
        if (chinese) steps[ns++] = NORM_CHINESE;
        if (strip) {
            steps[ns++] = NORM_NFD;
            steps[ns++] = NORM_STRIP;
        }
        if (lower) steps[ns++] = NORM_LOWER;
    } else if (!strcmp(type, "Lowercase")) {
        steps[ns++] = NORM_LOWER;
    } else if (!strcmp(type, "NFD")) {
        steps[ns++] = NORM_NFD;
    } else if (!strcmp(type, "StripAccents")) {
        steps[ns++] = NORM_STRIP;
    } else if (!strcmp(type, "Sequence")) {
        const cJSON *list = jget(n, "normalizers"), *it;
        if (!cJSON_IsArray(list))
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: normalizer.normalizers: expected an array", file);
        if (depth > 4) return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: normalizer: nested too deeply", file);
        cJSON_ArrayForEach(it, list) {
            if ((st = parse_normalizer(t, it, depth + 1, file, err, errlen))) return st;
        }
    } else {
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: normalizer type \"%s\" is not supported", file, type);
    }
    for (int i = 0; i < ns; i++) {
        if (t->n_norm >= NORM_STEPS_MAX)
            return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: normalizer: too many steps", file);
        t->norm[t->n_norm++] = steps[i];
    }
    return PD_OK;
}

static pd_status parse_pre_tokenizer(pd_tokenizer *t, const cJSON *p, const char *file, char *err, size_t errlen) {
    t->pre = PRE_NONE;
    if (jnull(p)) return PD_OK;
    const char *type = jtype(p);
    if (!type) return pd_err(err, errlen, PD_ERR_FORMAT, "%s: pre_tokenizer: missing \"type\"", file);
    if (!strcmp(type, "BertPreTokenizer")) {
        t->pre = PRE_BERT;
    } else if (!strcmp(type, "Whitespace")) {
        t->pre = PRE_WHITESPACE;
    } else if (!strcmp(type, "WhitespaceSplit")) {
        t->pre = PRE_WS_SPLIT;
    } else if (!strcmp(type, "ByteLevel")) {
        pd_status st;
        t->pre = PRE_BYTELEVEL;
        t->bl_add_prefix_space = t->bl_use_regex = true;
        if ((st = jbool(p, "add_prefix_space", &t->bl_add_prefix_space, file, "pre_tokenizer", err, errlen)) ||
            (st = jbool(p, "use_regex", &t->bl_use_regex, file, "pre_tokenizer", err, errlen)))
            return st;
    } else if (!strcmp(type, "Sequence")) {
        const cJSON *list = jget(p, "pretokenizers");
        if (!cJSON_IsArray(list))
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: pre_tokenizer.pretokenizers: expected an array", file);
        if (cJSON_GetArraySize(list) != 1)
            return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: pre_tokenizer: a Sequence of %d is not supported",
                          file, cJSON_GetArraySize(list));
        if (cJSON_IsObject(list->child) && jtype(list->child) && !strcmp(jtype(list->child), "Sequence"))
            return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: pre_tokenizer: nested Sequence", file);
        return parse_pre_tokenizer(t, list->child, file, err, errlen);
    } else {
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: pre_tokenizer type \"%s\" is not supported", file, type);
    }
    return PD_OK;
}

/* Reads ["token", id] (BertProcessing / RobertaProcessing cls and sep). */
static pd_status parse_tok_pair(const cJSON *p, const char *k, int32_t *id, const char *file, char *err,
                                size_t errlen) {
    const cJSON *x = jget(p, k);
    if (!cJSON_IsArray(x) || cJSON_GetArraySize(x) != 2 || !cJSON_IsString(x->child) ||
        !jint(x->child->next, 0, MAX_ID - 1, id))
        return pd_err(err, errlen, PD_ERR_FORMAT, "%s: post_processor.%s: expected [\"token\", id]", file, k);
    return PD_OK;
}

static pd_status parse_template(pd_tokenizer *t, const cJSON *p, const char *which, tpl_piece *tpl, int *n,
                                const char *file, char *err, size_t errlen) {
    const cJSON *list = jget(p, which), *it, *specials = jget(p, "special_tokens");
    if (!cJSON_IsArray(list))
        return pd_err(err, errlen, PD_ERR_FORMAT, "%s: post_processor.%s: expected an array", file, which);
    *n = 0;
    cJSON_ArrayForEach(it, list) {
        const cJSON *sp = jget(it, "SpecialToken"), *sq = jget(it, "Sequence"), *x = sp ? sp : sq;
        const cJSON *name = jget(x, "id");
        int32_t type_id = 0, ids[TPL_IDS_MAX];
        int nids = 0;
        if (!x || !cJSON_IsString(name))
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: post_processor.%s: expected SpecialToken or Sequence pieces",
                          file, which);
        if (!jnull(jget(x, "type_id")) && !jint(jget(x, "type_id"), 0, 1 << 16, &type_id))
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: post_processor.%s: bad type_id", file, which);
        int kind;
        if (sq) {
            if (!strcmp(name->valuestring, "A")) kind = TPL_A;
            else if (!strcmp(name->valuestring, "B")) kind = TPL_B;
            else
                return pd_err(err, errlen, PD_ERR_FORMAT, "%s: post_processor.%s: sequence id \"%s\"", file, which,
                              name->valuestring);
        } else {
            kind = TPL_SPECIAL;
            const cJSON *def = jget(specials, name->valuestring), *idl = jget(def, "ids"), *v;
            if (!cJSON_IsArray(idl))
                return pd_err(err, errlen, PD_ERR_FORMAT, "%s: post_processor.special_tokens: no ids for \"%s\"",
                              file, name->valuestring);
            cJSON_ArrayForEach(v, idl) {
                if (nids >= TPL_IDS_MAX || !jint(v, 0, MAX_ID - 1, &ids[nids]))
                    return pd_err(err, errlen, PD_ERR_FORMAT, "%s: post_processor.special_tokens.%s: bad ids", file,
                                  name->valuestring);
                nids++;
            }
        }
        if (tpl_add(t, tpl, n, kind, type_id, ids, nids))
            return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: post_processor: template too long", file);
    }
    return PD_OK;
}

/* Post-processors: TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel (only
 * trims offsets) and a Sequence of those. */
static pd_status parse_post_processor(pd_tokenizer *t, const cJSON *p, int depth, const char *file, char *err,
                                      size_t errlen) {
    if (jnull(p)) return PD_OK;
    const char *type = jtype(p);
    pd_status st;
    if (!type) return pd_err(err, errlen, PD_ERR_FORMAT, "%s: post_processor: missing \"type\"", file);
    if (!strcmp(type, "TemplateProcessing")) {
        t->n_tpl_ids = 0;
        if ((st = parse_template(t, p, "single", t->single, &t->n_single, file, err, errlen)) ||
            (st = parse_template(t, p, "pair", t->pair, &t->n_pair, file, err, errlen)))
            return st;
    } else if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        bool roberta = type[0] == 'R';
        int32_t cls, sep;
        if ((st = parse_tok_pair(p, "cls", &cls, file, err, errlen)) ||
            (st = parse_tok_pair(p, "sep", &sep, file, err, errlen)))
            return st;
        t->n_tpl_ids = 0;
        if (tpl_cls_sep(t, cls, sep, roberta)) return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: post_processor", file);
        if (roberta) {
            bool trim = true, aps = true;
            if ((st = jbool(p, "trim_offsets", &trim, file, "post_processor", err, errlen)) ||
                (st = jbool(p, "add_prefix_space", &aps, file, "post_processor", err, errlen)))
                return st;
            t->trim_offsets = trim;
            t->pp_add_prefix_space = aps;
        }
    } else if (!strcmp(type, "ByteLevel")) {
        bool trim = true, aps = true;
        if ((st = jbool(p, "trim_offsets", &trim, file, "post_processor", err, errlen)) ||
            (st = jbool(p, "add_prefix_space", &aps, file, "post_processor", err, errlen)))
            return st;
        t->trim_offsets = trim;
        t->pp_add_prefix_space = aps;
    } else if (!strcmp(type, "Sequence")) {
        const cJSON *list = jget(p, "processors"), *it;
        if (!cJSON_IsArray(list))
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: post_processor.processors: expected an array", file);
        if (depth > 2) return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: post_processor: nested too deeply", file);
        cJSON_ArrayForEach(it, list) {
            if ((st = parse_post_processor(t, it, depth + 1, file, err, errlen))) return st;
        }
    } else {
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: post_processor type \"%s\" is not supported", file, type);
    }
    return PD_OK;
}

/* Reads the model's "vocab" object into the vocabulary (ids must already be allocated). */
static pd_status parse_vocab(pd_tokenizer *t, const cJSON *vocab, const char *file, char *err, size_t errlen) {
    const cJSON *it;
    pd_status st;
    if ((st = strtab_init(&t->vocab, (size_t)cJSON_GetArraySize(vocab))))
        return pd_err(err, errlen, st, "%s: model.vocab: too large", file);
    cJSON_ArrayForEach(it, vocab) {
        int32_t id;
        if (!jint(it, 0, MAX_ID - 1, &id) || !it->string)
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: model.vocab: bad id for \"%.40s\"", file,
                          it->string ? it->string : "");
        if ((st = vocab_add(t, it->string, strlen(it->string), id))) return pd_err(err, errlen, st, "%s: out of memory", file);
    }
    return PD_OK;
}

/* Splits one merges entry: "a b" (exactly one space, as tokenizers' convert_merges_to_hashmap
 * requires) or ["a", "b"]. */
static bool merge_parts(const cJSON *m, const char **l, size_t *ll, const char **r, size_t *rl) {
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring, *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' ')) return false;
        *l = s;
        *ll = (size_t)(sp - s);
        *r = sp + 1;
        *rl = strlen(sp + 1);
        return true;
    }
    if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
        *l = m->child->valuestring;
        *ll = strlen(*l);
        *r = m->child->next->valuestring;
        *rl = strlen(*r);
        return true;
    }
    return false;
}

static pd_status parse_bpe(pd_tokenizer *t, const cJSON *model, const char *file, char *err, size_t errlen) {
    const cJSON *merges = jget(model, "merges"), *it;
    pd_status st;
    const char *unk, *csp, *eow;
    bool byte_fallback = false, fuse = false, ignore = false;
    if ((st = jstr(model, "unk_token", &unk, file, "model", err, errlen)) ||
        (st = jstr(model, "continuing_subword_prefix", &csp, file, "model", err, errlen)) ||
        (st = jstr(model, "end_of_word_suffix", &eow, file, "model", err, errlen)) ||
        (st = jbool(model, "byte_fallback", &byte_fallback, file, "model", err, errlen)) ||
        (st = jbool(model, "fuse_unk", &fuse, file, "model", err, errlen)) ||
        (st = jbool(model, "ignore_merges", &ignore, file, "model", err, errlen)))
        return st;
    if ((csp && *csp) || (eow && *eow))
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED,
                      "%s: model: BPE continuing_subword_prefix / end_of_word_suffix are not supported", file);
    if (byte_fallback) return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: model: BPE byte_fallback is not supported", file);
    const cJSON *dropout = jget(model, "dropout");
    if (!jnull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: model: BPE dropout is not supported", file);
    t->bpe_fuse_unk = fuse;
    t->bpe_ignore_merges = ignore;
    if (unk) {
        t->unk_id = vocab_get(t, unk, strlen(unk));
        if (t->unk_id < 0)
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: model.unk_token \"%.40s\" is not in the vocabulary", file, unk);
    }
    if (jnull(merges)) merges = NULL;
    else if (!cJSON_IsArray(merges)) return pd_err(err, errlen, PD_ERR_FORMAT, "%s: model.merges: expected an array", file);
    size_t nm = merges ? (size_t)cJSON_GetArraySize(merges) : 0, cap = 16;
    while (cap < 2 * nm) cap *= 2;
    t->merges = malloc(cap * sizeof *t->merges);
    if (!t->merges) return pd_err(err, errlen, PD_ERR_NOMEM, "%s: out of memory", file);
    for (size_t i = 0; i < cap; i++) t->merges[i].rank = -1;
    t->merges_mask = (uint32_t)(cap - 1);
    int32_t rank = 0;
    if (merges) cJSON_ArrayForEach(it, merges) {
        const char *l, *r;
        size_t ll, rl;
        if (!merge_parts(it, &l, &ll, &r, &rl))
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: model.merges[%d]: expected \"a b\" or [\"a\", \"b\"]", file,
                          (int)rank);
        int32_t a = vocab_get(t, l, ll), b = vocab_get(t, r, rl);
        int32_t m = strtab_get2(&t->vocab, t->arena, l, ll, r, rl);
        if (a < 0 || b < 0)
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: model.merges[%d]: \"%.*s\" is not in the vocabulary", file,
                          (int)rank, a < 0 ? (int)(ll > 40 ? 40 : ll) : (int)(rl > 40 ? 40 : rl), a < 0 ? l : r);
        if (m < 0)
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: model.merges[%d]: merged token \"%.*s%.*s\" is not in the vocabulary",
                          file, (int)rank, (int)(ll > 40 ? 40 : ll), l, (int)(rl > 40 ? 40 : rl), r);
        uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
        for (uint32_t i = (uint32_t)mix64(key) & t->merges_mask;; i = (i + 1) & t->merges_mask) {
            pair_slot *s = &t->merges[i];
            if (s->rank < 0 || s->key == key) { /* a duplicate merge keeps the later rank (HashMap collect) */
                *s = (pair_slot){key, rank, m};
                break;
            }
        }
        rank++;
    }
    /* GPT-2 bytes_to_unicode: printable bytes map to themselves, the others to U+0100.. */
    int k = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        t->byte_char[b] = (uint16_t)(printable ? b : 256 + k++);
        uint8_t u[4];
        int n = utf8_encode(t->byte_char[b], u);
        t->byte_id[b] = vocab_get(t, (const char *)u, (size_t)n);
    }
    return PD_OK;
}

static pd_status parse_wordpiece(pd_tokenizer *t, const cJSON *model, const char *file, char *err, size_t errlen) {
    const char *unk, *prefix;
    pd_status st;
    if ((st = jstr(model, "unk_token", &unk, file, "model", err, errlen)) ||
        (st = jstr(model, "continuing_subword_prefix", &prefix, file, "model", err, errlen)))
        return st;
    if (!unk) unk = "[UNK]";
    if (!prefix) prefix = "##";
    t->unk_id = vocab_get(t, unk, strlen(unk));
    if (t->unk_id < 0)
        return pd_err(err, errlen, PD_ERR_FORMAT, "%s: model.unk_token \"%.40s\" is not in the vocabulary", file, unk);
    if ((st = arena_add(t, prefix, strlen(prefix), &t->wp_prefix_off))) return pd_err(err, errlen, st, "%s: out of memory", file);
    t->wp_prefix_len = (uint32_t)strlen(prefix);
    int32_t mc = 100;
    const cJSON *x = jget(model, "max_input_chars_per_word");
    if (!jnull(x) && !jint(x, 0, INT32_MAX, &mc))
        return pd_err(err, errlen, PD_ERR_FORMAT, "%s: model.max_input_chars_per_word: expected an integer", file);
    t->wp_max_chars = mc;
    return PD_OK;
}

static pd_status parse_added_tokens(pd_tokenizer *t, const cJSON *list, const char *file, char *err, size_t errlen) {
    const cJSON *it;
    pd_status st;
    int i = -1;
    cJSON_ArrayForEach(it, list) {
        i++;
        const cJSON *content = jget(it, "content");
        int32_t id;
        bool sw = false, ls = false, rs = false, special = false, norm;
        if (!cJSON_IsString(content) || !jint(jget(it, "id"), 0, MAX_ID - 1, &id))
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: added_tokens[%d]: needs \"id\" and \"content\"", file, i);
        if ((st = jbool(it, "special", &special, file, "added_tokens", err, errlen))) return st;
        norm = !special;
        if ((st = jbool(it, "single_word", &sw, file, "added_tokens", err, errlen)) ||
            (st = jbool(it, "lstrip", &ls, file, "added_tokens", err, errlen)) ||
            (st = jbool(it, "rstrip", &rs, file, "added_tokens", err, errlen)) ||
            (st = jbool(it, "normalized", &norm, file, "added_tokens", err, errlen)))
            return st;
        if (!*content->valuestring) continue; /* HF ignores empty added tokens */
        if ((st = added_push(t, content->valuestring, strlen(content->valuestring), id, sw, ls, rs, norm, special)))
            return pd_err(err, errlen, st, "%s: out of memory", file);
    }
    return PD_OK;
}

static pd_status load_json_named(const char *json, size_t len, const char *file, pd_tokenizer **out, char *err,
                                 size_t errlen) {
    *out = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        size_t at = end && end >= json ? (size_t)(end - json) : 0;
        return pd_err(err, errlen, PD_ERR_FORMAT, "%s: not valid JSON (near byte %zu)", file, at);
    }
    pd_tokenizer *t = tok_new();
    pd_status st = PD_OK;
    const cJSON *model = jget(root, "model"), *vocab = jget(model, "vocab"), *added = jget(root, "added_tokens"), *it;
    const char *type = jtype(model);
    if (!t) {
        st = pd_err(err, errlen, PD_ERR_NOMEM, "%s: out of memory", file);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        st = pd_err(err, errlen, PD_ERR_FORMAT, "%s: expected a JSON object", file);
        goto done;
    }
    if (!cJSON_IsObject(model)) {
        st = pd_err(err, errlen, PD_ERR_FORMAT, "%s: missing \"model\" object", file);
        goto done;
    }
    if (!type) { /* files from old tokenizers versions leave the type implicit */
        if (jget(model, "merges")) type = "BPE";
        else if (jget(model, "continuing_subword_prefix") || jget(model, "max_input_chars_per_word")) type = "WordPiece";
        else type = "?";
    }
    if (!strcmp(type, "WordPiece")) t->kind = PD_TOK_WORDPIECE;
    else if (!strcmp(type, "BPE")) t->kind = PD_TOK_BPE;
    else {
        st = pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: model type \"%s\" is not supported (WordPiece and BPE are)",
                    file, type);
        goto done;
    }
    if (!cJSON_IsObject(vocab)) {
        st = pd_err(err, errlen, PD_ERR_FORMAT, "%s: model.vocab: expected an object", file);
        goto done;
    }
    if (!jnull(added) && !cJSON_IsArray(added)) {
        st = pd_err(err, errlen, PD_ERR_FORMAT, "%s: added_tokens: expected an array", file);
        goto done;
    }
    /* ids span the model vocabulary and the added tokens */
    int32_t max_id = -1, id;
    cJSON_ArrayForEach(it, vocab) if (jint(it, 0, MAX_ID - 1, &id) && id > max_id) max_id = id;
    if (cJSON_IsArray(added))
        cJSON_ArrayForEach(it, added) if (jint(jget(it, "id"), 0, MAX_ID - 1, &id) && id > max_id) max_id = id;
    if ((st = ids_init(t, max_id + 1))) {
        st = pd_err(err, errlen, st, "%s: out of memory", file);
        goto done;
    }
    if ((st = parse_vocab(t, vocab, file, err, errlen))) goto done;
    st = t->kind == PD_TOK_WORDPIECE ? parse_wordpiece(t, model, file, err, errlen) : parse_bpe(t, model, file, err, errlen);
    if (st) goto done;
    if (cJSON_IsArray(added) && (st = parse_added_tokens(t, added, file, err, errlen))) goto done;
    if ((st = parse_normalizer(t, jget(root, "normalizer"), 0, file, err, errlen))) goto done;
    if ((st = parse_pre_tokenizer(t, jget(root, "pre_tokenizer"), file, err, errlen))) goto done;
    if (t->pre == PRE_BYTELEVEL && t->kind != PD_TOK_BPE) {
        st = pd_err(err, errlen, PD_ERR_UNSUPPORTED, "%s: ByteLevel pre-tokenizer needs a BPE model", file);
        goto done;
    }
    t->byte_level = t->pre == PRE_BYTELEVEL;
    tpl_plain(t);
    if ((st = parse_post_processor(t, jget(root, "post_processor"), 0, file, err, errlen))) goto done;
    const cJSON *padding = jget(root, "padding");
    if (cJSON_IsObject(padding) && !jint(jget(padding, "pad_id"), 0, MAX_ID - 1, &t->pad_id)) t->pad_id = -1;
    if ((st = tok_finish(t, file, err, errlen))) goto done;
    if (!tpl_valid(t->single, t->n_single, false) || !tpl_valid(t->pair, t->n_pair, true)) {
        st = pd_err(err, errlen, PD_ERR_UNSUPPORTED,
                    "%s: post_processor: templates must hold sequence A once (and B once for pairs)", file);
        goto done;
    }
    /* every id the post-processor emits must exist, or the model would index past its table */
    for (int i = 0; i < t->n_tpl_ids; i++)
        if (t->tpl_ids[i] >= t->n_ids) {
            st = pd_err(err, errlen, PD_ERR_FORMAT, "%s: post_processor: special token id %d is out of the vocabulary",
                        file, (int)t->tpl_ids[i]);
            goto done;
        }
done:
    cJSON_Delete(root);
    if (st) {
        pd_tokenizer_free(t);
        return st;
    }
    *out = t;
    return PD_OK;
}

pd_status pd_tokenizer_load_json(const char *json, size_t len, pd_tokenizer **out, char *err, size_t errlen) {
    if (!out) return pd_err(err, errlen, PD_ERR_INVALID, "load_json: NULL argument");
    *out = NULL;
    if (!json) return pd_err(err, errlen, PD_ERR_INVALID, "load_json: NULL argument");
    return load_json_named(json, len, "tokenizer.json", out, err, errlen);
}

/* ==== Loading vocab.txt (+ tokenizer_config.json) ==== */

/* What BertTokenizerFast builds from vocab.txt: BertNormalizer, BertPreTokenizer, WordPiece
 * ("##", 100 characters) and the [CLS] A [SEP] (B [SEP]) template. */
typedef struct {
    bool lowercase, chinese;
    int strip_accents; /* -1: follow lowercase */
    const char *unk, *cls, *sep, *pad, *mask;
    const cJSON *added; /* added_tokens_decoder of tokenizer_config.json, or NULL */
} bert_cfg;

static pd_status load_vocab_txt_cfg(const char *path, const bert_cfg *cfg, pd_tokenizer **out, char *err,
                                    size_t errlen) {
    *out = NULL;
    char *buf;
    size_t len;
    pd_status st = pd_read_file(path, MAX_FILE, &buf, &len, err, errlen);
    if (st) return st;
    pd_tokenizer *t = tok_new();
    if (!t) {
        free(buf);
        return pd_err(err, errlen, PD_ERR_NOMEM, "%s: out of memory", path);
    }
    t->kind = PD_TOK_WORDPIECE;
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
    if (len && buf[len - 1] != '\n') lines++;
    int32_t max_id = (int32_t)(lines > (size_t)MAX_ID ? MAX_ID : lines) - 1, id;
    const cJSON *it;
    if (cfg->added)
        cJSON_ArrayForEach(it, cfg->added) {
            char *endp;
            long v = it->string ? strtol(it->string, &endp, 10) : -1;
            if (v >= 0 && v < MAX_ID && *endp == 0 && v > max_id) max_id = (int32_t)v;
        }
    if (lines > (size_t)MAX_ID) {
        st = pd_err(err, errlen, PD_ERR_TOO_LARGE, "%s: more than %d lines", path, MAX_ID);
        goto done;
    }
    if ((st = ids_init(t, max_id + 1)) || (st = strtab_init(&t->vocab, lines))) {
        st = pd_err(err, errlen, st, "%s: out of memory", path);
        goto done;
    }
    id = 0;
    for (size_t i = 0; i < len; id++) {
        size_t j = i;
        while (j < len && buf[j] != '\n') j++;
        size_t e = j; /* WordPiece::read_file trims trailing whitespace */
        while (e > i && (buf[e - 1] == '\r' || buf[e - 1] == ' ' || buf[e - 1] == '\t')) e--;
        if (utf8_check((const uint8_t *)buf + i, e - i) != e - i) {
            st = pd_err(err, errlen, PD_ERR_FORMAT, "%s: line %d is not valid UTF-8", path, (int)id + 1);
            goto done;
        }
        if ((st = vocab_add(t, buf + i, e - i, id))) {
            st = pd_err(err, errlen, st, "%s: out of memory", path);
            goto done;
        }
        i = j + 1;
    }
    t->unk_id = vocab_get(t, cfg->unk, strlen(cfg->unk));
    if (t->unk_id < 0) {
        st = pd_err(err, errlen, PD_ERR_FORMAT, "%s: the unknown token %s is not in the vocabulary", path, cfg->unk);
        goto done;
    }
    if ((st = arena_add(t, "##", 2, &t->wp_prefix_off))) goto done;
    t->wp_prefix_len = 2;
    t->wp_max_chars = 100;
    bool strip = cfg->strip_accents < 0 ? cfg->lowercase : cfg->strip_accents > 0;
    t->norm[t->n_norm++] = NORM_CLEAN;
    if (cfg->chinese) t->norm[t->n_norm++] = NORM_CHINESE;
    if (strip) {
        t->norm[t->n_norm++] = NORM_NFD;
        t->norm[t->n_norm++] = NORM_STRIP;
    }
    if (cfg->lowercase) t->norm[t->n_norm++] = NORM_LOWER;
    t->pre = PRE_BERT;
    const char *specials[5] = {cfg->pad, cfg->unk, cfg->cls, cfg->sep, cfg->mask};
    for (int i = 0; i < 5; i++) {
        if (!specials[i] || (id = vocab_get(t, specials[i], strlen(specials[i]))) < 0) continue;
        if ((st = added_push(t, specials[i], strlen(specials[i]), id, false, false, false, false, true))) goto done;
    }
    if (cfg->added)
        cJSON_ArrayForEach(it, cfg->added) {
            const cJSON *content = jget(it, "content");
            char *endp;
            long v = it->string ? strtol(it->string, &endp, 10) : -1;
            if (v < 0 || v >= MAX_ID || *endp || !cJSON_IsString(content) || !*content->valuestring) continue;
            bool sw = false, ls = false, rs = false, special = false, norm;
            const char *file = "tokenizer_config.json";
            if ((st = jbool(it, "special", &special, file, "added_tokens_decoder", err, errlen))) goto done;
            norm = !special;
            if ((st = jbool(it, "single_word", &sw, file, "added_tokens_decoder", err, errlen)) ||
                (st = jbool(it, "lstrip", &ls, file, "added_tokens_decoder", err, errlen)) ||
                (st = jbool(it, "rstrip", &rs, file, "added_tokens_decoder", err, errlen)) ||
                (st = jbool(it, "normalized", &norm, file, "added_tokens_decoder", err, errlen)))
                goto done;
            bool dup = false; /* the named special tokens were registered already */
            for (int i = 0; i < t->n_added; i++)
                dup |= t->added[i].len == strlen(content->valuestring) &&
                       !memcmp(t->arena + t->added[i].off, content->valuestring, t->added[i].len);
            if (dup) continue;
            if ((st = added_push(t, content->valuestring, strlen(content->valuestring), (int32_t)v, sw, ls, rs, norm,
                                 special)))
                goto done;
        }
    int32_t cls = cfg->cls ? vocab_get(t, cfg->cls, strlen(cfg->cls)) : -1;
    int32_t sep = cfg->sep ? vocab_get(t, cfg->sep, strlen(cfg->sep)) : -1;
    if (cls < 0 || sep < 0) {
        st = pd_err(err, errlen, PD_ERR_FORMAT, "%s: %s or %s is not in the vocabulary", path,
                    cfg->cls ? cfg->cls : "(cls)", cfg->sep ? cfg->sep : "(sep)");
        goto done;
    }
    if ((st = tpl_cls_sep(t, cls, sep, false))) goto done;
    if (cfg->pad) t->pad_id = vocab_get(t, cfg->pad, strlen(cfg->pad));
    st = tok_finish(t, path, err, errlen);
done:
    free(buf);
    if (st) {
        if (st == PD_ERR_NOMEM && err && errlen && !*err) pd_err(err, errlen, st, "%s: out of memory", path);
        pd_tokenizer_free(t);
        return st;
    }
    *out = t;
    return PD_OK;
}

static const bert_cfg bert_defaults = {true, true, -1, "[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", NULL};

pd_status pd_tokenizer_load_vocab_txt(const char *path, int lowercase, pd_tokenizer **out, char *err, size_t errlen) {
    if (!out || !path) return pd_err(err, errlen, PD_ERR_INVALID, "load_vocab_txt: NULL argument");
    bert_cfg cfg = bert_defaults;
    cfg.lowercase = lowercase != 0;
    if (err && errlen) err[0] = 0;
    return load_vocab_txt_cfg(path, &cfg, out, err, errlen);
}

/* A special token in tokenizer_config.json: "[CLS]" or {"content": "[CLS]", ...}. */
static const char *cfg_token(const cJSON *cfg, const char *k, const char *dflt) {
    const cJSON *x = jget(cfg, k);
    if (cJSON_IsString(x)) return x->valuestring;
    if (cJSON_IsString(jget(x, "content"))) return jget(x, "content")->valuestring;
    return dflt;
}

pd_status pd_tokenizer_load_dir(const char *dir, pd_tokenizer **out, char *err, size_t errlen) {
    if (!out || !dir) return pd_err(err, errlen, PD_ERR_INVALID, "load_dir: NULL argument");
    *out = NULL;
    if (err && errlen) err[0] = 0;
    char path[4096];
    char *buf;
    size_t len;
    if (pd_path_join(path, sizeof path, dir, "tokenizer.json"))
        return pd_err(err, errlen, PD_ERR_INVALID, "%s: path too long", dir);
    pd_status st = pd_read_file(path, MAX_FILE, &buf, &len, err, errlen);
    if (!st) {
        st = load_json_named(buf, len, path, out, err, errlen);
        free(buf);
        return st;
    }
    if (st != PD_ERR_NOT_FOUND) return st;

    char vpath[4096], cpath[4096];
    if (pd_path_join(vpath, sizeof vpath, dir, "vocab.txt") || pd_path_join(cpath, sizeof cpath, dir, "tokenizer_config.json"))
        return pd_err(err, errlen, PD_ERR_INVALID, "%s: path too long", dir);
    FILE *f = fopen(vpath, "rb");
    if (!f) return pd_err(err, errlen, PD_ERR_NOT_FOUND, "%s: neither tokenizer.json nor vocab.txt", dir);
    fclose(f);
    bert_cfg cfg = bert_defaults;
    cJSON *root = NULL;
    st = pd_read_file(cpath, MAX_FILE, &buf, &len, err, errlen);
    if (st && st != PD_ERR_NOT_FOUND) return st;
    if (!st) {
        const char *end = NULL;
        root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
        free(buf);
        if (!cJSON_IsObject(root)) {
            cJSON_Delete(root);
            return pd_err(err, errlen, PD_ERR_FORMAT, "%s: not a JSON object", cpath);
        }
        bool lower = true, chinese = true, strip = false;
        const cJSON *sa = jget(root, "strip_accents");
        if ((st = jbool(root, "do_lower_case", &lower, cpath, "config", err, errlen)) ||
            (st = jbool(root, "tokenize_chinese_chars", &chinese, cpath, "config", err, errlen)) ||
            (st = jbool(root, "strip_accents", &strip, cpath, "config", err, errlen))) {
            cJSON_Delete(root);
            return st;
        }
        cfg.lowercase = lower;
        cfg.chinese = chinese;
        cfg.strip_accents = jnull(sa) ? -1 : strip;
        cfg.unk = cfg_token(root, "unk_token", cfg.unk);
        cfg.cls = cfg_token(root, "cls_token", cfg.cls);
        cfg.sep = cfg_token(root, "sep_token", cfg.sep);
        cfg.pad = cfg_token(root, "pad_token", cfg.pad);
        cfg.mask = cfg_token(root, "mask_token", cfg.mask);
        const cJSON *dec = jget(root, "added_tokens_decoder");
        cfg.added = cJSON_IsObject(dec) ? dec : NULL;
    }
    if (err && errlen) err[0] = 0;
    st = load_vocab_txt_cfg(vpath, &cfg, out, err, errlen);
    cJSON_Delete(root);
    return st;
}
