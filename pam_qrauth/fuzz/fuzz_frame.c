/*
 * libFuzzer: the frame parser. The first input byte picks how the rest is chunked; the
 * rest is a byte stream of frames. Checks: the chunked parse agrees with the one-chunk
 * parse, decoded values respect their limits, and re-encoding a decoded message decodes
 * to the same message.
 */
#include <stdlib.h>
#include <string.h>

/* The parser itself, for its field table: re-encoding takes each field's kind from the very
 * table the parser checked it against, so a new tag cannot leave the fuzzer behind. */
#include "frame.c"

/* Kind of each (type, tag), for re-encoding; K_NONE = unknown. */
static int
kind(uint8_t type, int tag)
{
	const struct type_spec *spec = find_spec(type);

	return spec != NULL ? spec->f[tag].kind : K_NONE;
}

static void
same(const struct qr_msg *a, const struct qr_msg *b)
{
	if (a->type != b->type)
		abort();
	for (int t = 1; t <= QR_MAX_TAG; t++) {
		const struct qr_field *x = &a->f[t], *y = &b->f[t];

		if (x->present != y->present || x->len != y->len || x->num != y->num ||
		    (x->present && memcmp(x->val, y->val, x->len) != 0))
			abort();
	}
}

static void
reencode(const struct qr_msg *m)
{
	static struct qr_frame fr;
	static struct qr_msg back;
	char s[QR_MAX_FRAME + 1];

	frame_begin(&fr, m->type);
	for (int t = 1; t <= QR_MAX_TAG; t++) {
		const struct qr_field *f = &m->f[t];

		if (!f->present)
			continue;
		switch (kind(m->type, t)) {
		case K_STR:
			if (memchr(f->val, 0, f->len) != NULL || !frame_utf8_ok(f->val, f->len))
				abort();	/* the parser let a bad string through */
			memcpy(s, f->val, f->len);
			s[f->len] = '\0';
			frame_add_str(&fr, (uint8_t)t, s);
			break;
		case K_U8:
			if (f->len != 1 || f->num > 255)
				abort();
			frame_add_u8(&fr, (uint8_t)t, (uint8_t)f->num);
			break;
		case K_U32:
			if (f->len != 4)
				abort();
			frame_add_u32(&fr, (uint8_t)t, f->num);
			break;
		default:
			abort();	/* a tag the table does not know */
		}
	}
	if (frame_finish(&fr) != 0 || frame_decode_body(fr.data + 4, fr.len - 4, &back) != 0)
		abort();
	same(m, &back);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct qr_parser whole, part;
	static struct qr_msg mw, mp;
	size_t off = 0, step;

	if (size < 1)
		return 0;
	step = 1 + data[0] % 64;
	data++;
	size--;

	/* Frame after frame until the input ends or an error. */
	while (off < size) {
		size_t used = 0, pos = off, u;
		int rw, rp = QR_FRAME_MORE;

		frame_parser_init(&whole);
		rw = frame_parser_feed(&whole, data + off, size - off, &used, &mw);
		if (used > size - off)
			abort();

		frame_parser_init(&part);
		while (rp == QR_FRAME_MORE && pos < size) {
			size_t n = size - pos < step ? size - pos : step;

			rp = frame_parser_feed(&part, data + pos, n, &u, &mp);
			if (u > n || (rp == QR_FRAME_MORE && u != n))
				abort();
			pos += u;
		}
		if (rp != rw || pos - off != used)
			abort();
		if (rw != QR_FRAME_DONE)
			break;
		same(&mw, &mp);
		if (used < 5 || used > 4 + QR_MAX_FRAME)
			abort();
		reencode(&mw);
		off += used;
	}
	return 0;
}
