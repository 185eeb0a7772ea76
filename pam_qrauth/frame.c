/*
 * Framed binary protocol: one table of messages and fields, a bounded incremental parser
 * and an encoder that both check against that table. No allocation: the parser's one
 * buffer holds at most one frame body (QR_MAX_FRAME bytes).
 *
 * The checks and their order match protocol/src/frame.ts (decodeBody) so that both sides
 * accept and reject exactly the same bytes. Value ranges (result codes, modes) are the
 * caller's business, as on the TypeScript side.
 */
#include "frame.h"

#include <string.h>

enum { K_NONE = 0, K_STR, K_U8, K_U32 };
enum { PS_HEADER = 0, PS_BODY, PS_DONE, PS_ERROR };

struct field_spec {
	uint8_t kind;
	uint8_t required;
	uint16_t max;		/* strings: bytes */
};

struct type_spec {
	uint8_t type;
	struct field_spec f[QR_MAX_TAG + 1];
};

static const struct type_spec specs[] = {
	{ QR_BEGIN, {
		[QR_BEGIN_USER] = { K_STR, 1, 256 },
		[QR_BEGIN_RHOST] = { K_STR, 0, 256 },
		[QR_BEGIN_SERVICE] = { K_STR, 1, 64 },
		[QR_BEGIN_TTY] = { K_STR, 0, 64 },
		[QR_BEGIN_MODE] = { K_U8, 0, 1 },
		[QR_BEGIN_QR] = { K_U8, 0, 1 },
		[QR_BEGIN_TIMEOUT] = { K_U32, 0, 4 },
		[QR_BEGIN_AUTHFILE] = { K_STR, 0, 256 },
		[QR_BEGIN_UID] = { K_U32, 0, 4 },
		[QR_BEGIN_HOME] = { K_STR, 0, 1024 },
		[QR_BEGIN_LEASE] = { K_U8, 0, 1 },
		[QR_BEGIN_AUTH_INFO] = { K_STR, 0, QR_MAX_AUTH_INFO },
		[QR_BEGIN_UV] = { K_U8, 0, 1 },
		[QR_BEGIN_RUSER] = { K_STR, 0, 256 },
	} },
	{ QR_WAIT, {
		[QR_WAIT_MAX_WAIT] = { K_U32, 0, 4 },
	} },
	{ QR_CODE, {
		[QR_CODE_DIGITS] = { K_STR, 1, 16 },
	} },
	{ QR_RENDER, {
		[QR_RENDER_QR] = { K_U8, 1, 1 },
	} },
	{ QR_CHALLENGE, {
		[QR_CHALLENGE_QR_TEXT] = { K_STR, 1, 12288 },
		[QR_CHALLENGE_PROMPT] = { K_STR, 1, 512 },
		[QR_CHALLENGE_EXPIRES] = { K_U32, 1, 4 },
		[QR_CHALLENGE_MODE] = { K_U8, 1, 1 },
		[QR_CHALLENGE_PAYLOAD] = { K_STR, 1, 256 },
	} },
	{ QR_VERDICT, {
		[QR_VERDICT_RESULT] = { K_U8, 1, 1 },
		[QR_VERDICT_MESSAGE] = { K_STR, 0, 512 },
		[QR_VERDICT_TRIES_LEFT] = { K_U8, 0, 1 },
	} },
};

static const struct type_spec *
find_spec(uint8_t type)
{
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++)
		if (specs[i].type == type)
			return &specs[i];
	return NULL;
}

static uint32_t
get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

int
frame_utf8_ok(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = s[i], lo = 0x80, hi = 0xbf;
		size_t k;

		if (c == 0)
			return 0;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			k = 1;
		} else if (c >= 0xe0 && c <= 0xef) {
			k = 2;
			if (c == 0xe0)
				lo = 0xa0;	/* overlong */
			if (c == 0xed)
				hi = 0x9f;	/* UTF-16 surrogates */
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3;
			if (c == 0xf0)
				lo = 0x90;	/* overlong */
			if (c == 0xf4)
				hi = 0x8f;	/* above U+10FFFF */
		} else {
			return 0;
		}
		if (n - i - 1 < k || s[i + 1] < lo || s[i + 1] > hi)
			return 0;
		for (size_t j = 2; j <= k; j++)
			if ((s[i + j] & 0xc0) != 0x80)
				return 0;
		i += k + 1;
	}
	return 1;
}

int
frame_decode_body(const uint8_t *body, size_t len, struct qr_msg *out)
{
	const struct type_spec *spec;
	size_t o = 1;
	int rc = QR_FRAME_DONE;

	memset(out, 0, sizeof(*out));
	if (len < 1 || len > QR_MAX_FRAME)
		return QR_FRAME_E_LENGTH;
	if ((spec = find_spec(body[0])) == NULL)
		return QR_FRAME_E_TYPE;
	out->type = body[0];

	while (o < len && rc == QR_FRAME_DONE) {
		uint8_t tag;
		uint16_t flen;
		const struct field_spec *fs;
		struct qr_field *f;

		if (len - o < 3) {
			rc = QR_FRAME_E_TRUNC;
			break;
		}
		tag = body[o];
		flen = (uint16_t)(body[o + 1] << 8 | body[o + 2]);
		o += 3;
		if (flen > len - o) {
			rc = QR_FRAME_E_TRUNC;
			break;
		}
		if (tag == 0 || tag > QR_MAX_TAG || spec->f[tag].kind == K_NONE) {
			rc = QR_FRAME_E_TAG;
			break;
		}
		fs = &spec->f[tag];
		f = &out->f[tag];
		if (f->present) {
			rc = QR_FRAME_E_DUP;
			break;
		}
		f->present = 1;
		f->len = flen;
		f->val = body + o;
		switch (fs->kind) {
		case K_U8:
			if (flen != 1)
				rc = QR_FRAME_E_SIZE;
			else
				f->num = body[o];
			break;
		case K_U32:
			if (flen != 4)
				rc = QR_FRAME_E_SIZE;
			else
				f->num = get_be32(body + o);
			break;
		default:
			if (flen > fs->max)
				rc = QR_FRAME_E_SIZE;
			else if (!frame_utf8_ok(body + o, flen))
				rc = QR_FRAME_E_STRING;
			break;
		}
		o += flen;
	}
	for (int t = 1; t <= QR_MAX_TAG && rc == QR_FRAME_DONE; t++)
		if (spec->f[t].required && !out->f[t].present)
			rc = QR_FRAME_E_MISSING;
	if (rc != QR_FRAME_DONE)
		memset(out, 0, sizeof(*out));
	return rc;
}

void
frame_parser_init(struct qr_parser *p)
{
	p->state = PS_HEADER;
	p->need = 4;
	p->len = 0;
}

size_t
frame_parser_need(const struct qr_parser *p)
{
	return p->state == PS_HEADER || p->state == PS_BODY ? p->need : 0;
}

int
frame_parser_feed(struct qr_parser *p, const uint8_t *in, size_t n, size_t *used,
		  struct qr_msg *out)
{
	size_t off = 0;
	int rc;

	*used = 0;
	if (p->state != PS_HEADER && p->state != PS_BODY)
		return QR_FRAME_E_STATE;
	while (off < n) {
		uint32_t take = p->need;

		if (take > n - off)
			take = (uint32_t)(n - off);
		if (p->state == PS_HEADER)
			memcpy(p->hdr + (4 - p->need), in + off, take);
		else
			memcpy(p->body + (p->len - p->need), in + off, take);
		off += take;
		p->need -= take;
		if (p->need > 0)
			break;
		if (p->state == PS_HEADER) {
			/* Reject an oversized frame on its header, before reading its body. */
			p->len = get_be32(p->hdr);
			if (p->len < 1 || p->len > QR_MAX_FRAME) {
				p->state = PS_ERROR;
				*used = off;
				return QR_FRAME_E_LENGTH;
			}
			p->state = PS_BODY;
			p->need = p->len;
			continue;
		}
		*used = off;
		rc = frame_decode_body(p->body, p->len, out);
		p->state = rc == QR_FRAME_DONE ? PS_DONE : PS_ERROR;
		return rc;
	}
	*used = off;
	return QR_FRAME_MORE;
}

void
frame_parser_wipe(struct qr_parser *p)
{
	explicit_bzero(p, sizeof(*p));
	p->state = PS_ERROR;
}

void
frame_begin(struct qr_frame *fr, uint8_t type)
{
	fr->len = 5;
	fr->err = find_spec(type) ? 0 : QR_FRAME_E_TYPE;
	fr->seen = 0;
	fr->data[4] = type;
}

/* Append a field header after checking it against the table; returns where the value goes. */
static uint8_t *
add_field(struct qr_frame *fr, uint8_t tag, uint8_t kind, size_t vlen)
{
	const struct type_spec *spec;
	uint8_t *p;

	if (fr->err != 0)
		return NULL;
	spec = find_spec(fr->data[4]);
	if (spec == NULL || tag == 0 || tag > QR_MAX_TAG || spec->f[tag].kind != kind)
		fr->err = QR_FRAME_E_TAG;
	else if (fr->seen & (1u << tag))
		fr->err = QR_FRAME_E_DUP;
	else if (kind == K_STR && vlen > spec->f[tag].max)
		fr->err = QR_FRAME_E_SIZE;
	else if (fr->len - 4 + 3 + vlen > QR_MAX_FRAME)
		fr->err = QR_FRAME_E_LENGTH;
	if (fr->err != 0)
		return NULL;
	fr->seen |= 1u << tag;
	p = fr->data + fr->len;
	p[0] = tag;
	p[1] = (uint8_t)(vlen >> 8);
	p[2] = (uint8_t)vlen;
	fr->len += 3 + vlen;
	return p + 3;
}

void
frame_add_str(struct qr_frame *fr, uint8_t tag, const char *s)
{
	size_t n;
	uint8_t *v;

	if (s == NULL) {
		if (fr->err == 0)
			fr->err = QR_FRAME_E_STATE;
		return;
	}
	n = strnlen(s, QR_MAX_FRAME + 1);
	if (fr->err == 0 && !frame_utf8_ok((const uint8_t *)s, n))
		fr->err = QR_FRAME_E_STRING;
	if ((v = add_field(fr, tag, K_STR, n)) != NULL)
		memcpy(v, s, n);
}

void
frame_add_u8(struct qr_frame *fr, uint8_t tag, uint8_t val)
{
	uint8_t *v;

	if ((v = add_field(fr, tag, K_U8, 1)) != NULL)
		v[0] = val;
}

void
frame_add_u32(struct qr_frame *fr, uint8_t tag, uint32_t val)
{
	uint8_t *v;

	if ((v = add_field(fr, tag, K_U32, 4)) != NULL)
		put_be32(v, val);
}

int
frame_finish(struct qr_frame *fr)
{
	const struct type_spec *spec;

	if (fr->err != 0)
		return fr->err;
	spec = find_spec(fr->data[4]);
	for (unsigned t = 1; t <= QR_MAX_TAG; t++)
		if (spec->f[t].required && !(fr->seen & (1u << t)))
			return fr->err = QR_FRAME_E_MISSING;
	put_be32(fr->data, (uint32_t)(fr->len - 4));
	return 0;
}

void
frame_wipe(struct qr_frame *fr)
{
	explicit_bzero(fr, sizeof(*fr));
	fr->err = QR_FRAME_E_STATE;
}

const char *
frame_strerror(int status)
{
	switch (status) {
	case QR_FRAME_DONE: return "ok";
	case QR_FRAME_MORE: return "incomplete frame";
	case QR_FRAME_E_LENGTH: return "frame length out of range";
	case QR_FRAME_E_TYPE: return "unknown message type";
	case QR_FRAME_E_TAG: return "unknown tag";
	case QR_FRAME_E_DUP: return "repeated tag";
	case QR_FRAME_E_SIZE: return "field too long or wrong size";
	case QR_FRAME_E_TRUNC: return "field runs past the end of the frame";
	case QR_FRAME_E_MISSING: return "required field missing";
	case QR_FRAME_E_STRING: return "string with NUL byte or invalid UTF-8";
	case QR_FRAME_E_STATE: return "parser misuse";
	default: return "unknown framing error";
	}
}
