/*
 * Parser and encoder tests (docs/protocol.md section 1). Like ws's receiver tests: every
 * case is fed as one chunk, split at every byte boundary, and byte by byte, and must give
 * the same answer each way. Prints TAP; exits 1 on any failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

static int n_ok, n_fail;

#define CHECK(cond, ...) do { \
	if (cond) { n_ok++; } else { n_fail++; printf("not ok - "); printf(__VA_ARGS__); \
	printf(" (%s:%d)\n", __FILE__, __LINE__); } } while (0)

/* A byte builder for raw frames, valid or not. */
struct bb {
	size_t n;
	uint8_t b[4 + 70000];
};

static struct bb body, frame;

static void
bb_reset(struct bb *x)
{
	x->n = 0;
}

static void
bb_put(struct bb *x, const void *p, size_t n)
{
	memcpy(x->b + x->n, p, n);
	x->n += n;
}

static void
bb_u8(struct bb *x, uint8_t v)
{
	bb_put(x, &v, 1);
}

static void
bb_u16(struct bb *x, uint16_t v)
{
	bb_u8(x, (uint8_t)(v >> 8));
	bb_u8(x, (uint8_t)v);
}

static void
bb_u32(struct bb *x, uint32_t v)
{
	bb_u16(x, (uint16_t)(v >> 16));
	bb_u16(x, (uint16_t)v);
}

static void
field(uint8_t tag, const void *v, size_t n)
{
	bb_u8(&body, tag);
	bb_u16(&body, (uint16_t)n);
	bb_put(&body, v, n);
}

static void
field_str(uint8_t tag, const char *s)
{
	field(tag, s, strlen(s));
}

static void
field_fill(uint8_t tag, char c, size_t n)
{
	bb_u8(&body, tag);
	bb_u16(&body, (uint16_t)n);
	memset(body.b + body.n, c, n);
	body.n += n;
}

static void
field_u8(uint8_t tag, uint8_t v)
{
	field(tag, &v, 1);
}

static void
field_u32(uint8_t tag, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };

	field(tag, b, 4);
}

static void
start(uint8_t type)
{
	bb_reset(&body);
	bb_u8(&body, type);
}

/* frame = length prefix + body */
static struct bb *
framed(void)
{
	bb_reset(&frame);
	bb_u32(&frame, (uint32_t)body.n);
	bb_put(&frame, body.b, body.n);
	return &frame;
}

static struct qr_parser parser;

static int
same_msg(const struct qr_msg *a, const struct qr_msg *b)
{
	if (a->type != b->type)
		return 0;
	for (int t = 1; t <= QR_MAX_TAG; t++) {
		const struct qr_field *x = &a->f[t], *y = &b->f[t];

		if (x->present != y->present || x->len != y->len || x->num != y->num)
			return 0;
		if (x->present && memcmp(x->val, y->val, x->len) != 0)
			return 0;
	}
	return 1;
}

/* Feed `in` in chunks [0,split) [split,n) (split 0: one chunk); returns the final status. */
static int
feed_split(const uint8_t *in, size_t n, size_t split, struct qr_msg *out, size_t *total_used)
{
	size_t used = 0;
	int rc;

	frame_parser_init(&parser);
	*total_used = 0;
	if (split == 0 || split >= n)
		split = n;
	rc = frame_parser_feed(&parser, in, split, &used, out);
	*total_used = used;
	if (rc == QR_FRAME_MORE && split < n) {
		rc = frame_parser_feed(&parser, in + split, n - split, &used, out);
		*total_used += used;
	}
	return rc;
}

/*
 * Run one case every way. `in` is a full frame; for DONE, `check` (if any) inspects the
 * decoded message. Extra bytes after a valid frame must be left alone.
 */
static void
run_case(const char *name, const struct bb *in, int want, void (*check)(const struct qr_msg *))
{
	static struct qr_msg whole, part;
	static uint8_t extra[4 + 70000 + 3];
	size_t used, i;
	int rc, bad = 0;

	rc = feed_split(in->b, in->n, 0, &whole, &used);
	CHECK(rc == want, "%s: one chunk gives %d (%s), want %d (%s)", name, rc,
	    frame_strerror(rc), want, frame_strerror(want));
	if (rc != want)
		return;
	if (want == QR_FRAME_DONE) {
		CHECK(used == in->n, "%s: used %zu of %zu", name, used, in->n);
		CHECK(frame_parser_need(&parser) == 0, "%s: need after done", name);
		rc = frame_parser_feed(&parser, in->b, 1, &used, &part);
		CHECK(rc == QR_FRAME_E_STATE && used == 0, "%s: feed after done is refused", name);
		if (check != NULL)
			check(&whole);
		/* Trailing bytes belong to the next frame: they are not consumed. */
		memcpy(extra, in->b, in->n);
		memcpy(extra + in->n, "\x00\x00\x00", 3);
		rc = feed_split(extra, in->n + 3, 0, &part, &used);
		CHECK(rc == QR_FRAME_DONE && used == in->n, "%s: trailing bytes left alone", name);
		/* frame_decode_body on the body alone agrees. */
		rc = frame_decode_body(in->b + 4, in->n - 4, &part);
		CHECK(rc == QR_FRAME_DONE && same_msg(&whole, &part), "%s: decode_body agrees", name);
	}

	/* Every split point. */
	for (i = 1; i < in->n && !bad; i++) {
		rc = feed_split(in->b, in->n, i, &part, &used);
		if (rc != want || (want == QR_FRAME_DONE && (used != in->n || !same_msg(&whole, &part))))
			bad = 1;
	}
	CHECK(!bad, "%s: split at byte %zu gives %d, want %d", name, i - 1, rc, want);

	/* Byte by byte; an error must show no later than the byte that makes it. */
	frame_parser_init(&parser);
	rc = QR_FRAME_MORE;
	for (i = 0; i < in->n && rc == QR_FRAME_MORE; i++) {
		rc = frame_parser_feed(&parser, in->b + i, 1, &used, &part);
		if (used != 1)
			rc = 99;
	}
	CHECK(rc == want && (want != QR_FRAME_DONE || same_msg(&whole, &part)),
	    "%s: byte by byte gives %d, want %d", name, rc, want);
	if (want == QR_FRAME_DONE)
		CHECK(i == in->n, "%s: byte by byte finished early", name);

	/* Every proper prefix of a valid frame is just incomplete. */
	if (want == QR_FRAME_DONE) {
		bad = 0;
		for (i = 0; i < in->n && !bad; i++) {
			frame_parser_init(&parser);
			rc = frame_parser_feed(&parser, in->b, i, &used, &part);
			bad = rc != QR_FRAME_MORE || used != i || frame_parser_need(&parser) == 0;
		}
		CHECK(!bad, "%s: prefix of %zu bytes is incomplete", name, i - 1);
	}
	printf("ok - %s\n", name);
}

/* --- checks on decoded values --- */

static void
check_begin(const struct qr_msg *m)
{
	CHECK(m->type == QR_BEGIN, "begin type");
	CHECK(m->f[QR_BEGIN_USER].len == 5 && memcmp(m->f[QR_BEGIN_USER].val, "alice", 5) == 0,
	    "begin user");
	CHECK(m->f[QR_BEGIN_TIMEOUT].present && m->f[QR_BEGIN_TIMEOUT].num == 90, "begin timeout");
	CHECK(m->f[QR_BEGIN_MODE].num == 2 && m->f[QR_BEGIN_QR].num == 1, "begin mode/qr");
	CHECK(m->f[QR_BEGIN_AUTHFILE].present, "begin authfile");
	CHECK(m->f[QR_BEGIN_UID].present && m->f[QR_BEGIN_UID].num == 1000, "begin uid");
	CHECK(m->f[QR_BEGIN_HOME].len == 11 && memcmp(m->f[QR_BEGIN_HOME].val, "/home/alice", 11) == 0,
	    "begin home");
}

static void
check_verdict_min(const struct qr_msg *m)
{
	CHECK(m->type == QR_VERDICT && m->f[QR_VERDICT_RESULT].num == 7 &&
	    !m->f[QR_VERDICT_MESSAGE].present && !m->f[QR_VERDICT_TRIES_LEFT].present, "verdict min");
}

static void
check_u32_max(const struct qr_msg *m)
{
	CHECK(m->f[QR_WAIT_MAX_WAIT].num == 0xffffffffu, "u32 big-endian max");
}

static void
check_empty_str(const struct qr_msg *m)
{
	CHECK(m->f[QR_VERDICT_MESSAGE].present && m->f[QR_VERDICT_MESSAGE].len == 0, "empty string");
}

/* A full CHALLENGE; each string's length can be set. */
static void
challenge(size_t qr, size_t prompt, size_t payload)
{
	start(QR_CHALLENGE);
	field_fill(QR_CHALLENGE_QR_TEXT, '#', qr);
	field_fill(QR_CHALLENGE_PROMPT, 'p', prompt);
	field_u32(QR_CHALLENGE_EXPIRES, 90);
	field_u8(QR_CHALLENGE_MODE, 1);
	field_fill(QR_CHALLENGE_PAYLOAD, 'x', payload);
}

struct strfield {
	uint8_t type, tag;
	size_t max;
	const char *name;
};

/* Every string field at its max (valid) and one past it (invalid), others minimal. */
static void
limits(void)
{
	static const struct strfield sf[] = {
		{ QR_BEGIN, QR_BEGIN_USER, 256, "BEGIN.user" },
		{ QR_BEGIN, QR_BEGIN_RHOST, 256, "BEGIN.rhost" },
		{ QR_BEGIN, QR_BEGIN_SERVICE, 64, "BEGIN.service" },
		{ QR_BEGIN, QR_BEGIN_TTY, 64, "BEGIN.tty" },
		{ QR_BEGIN, QR_BEGIN_AUTHFILE, 256, "BEGIN.authfile" },
		{ QR_BEGIN, QR_BEGIN_HOME, 1024, "BEGIN.home" },
		{ QR_CODE, QR_CODE_DIGITS, 16, "CODE.digits" },
		{ QR_CHALLENGE, QR_CHALLENGE_QR_TEXT, 12288, "CHALLENGE.qr_text" },
		{ QR_CHALLENGE, QR_CHALLENGE_PROMPT, 512, "CHALLENGE.prompt" },
		{ QR_CHALLENGE, QR_CHALLENGE_PAYLOAD, 256, "CHALLENGE.payload" },
		{ QR_VERDICT, QR_VERDICT_MESSAGE, 512, "VERDICT.message" },
	};
	char name[96];

	for (size_t i = 0; i < sizeof(sf) / sizeof(sf[0]); i++) {
		for (size_t extra = 0; extra <= 1; extra++) {
			size_t len = sf[i].max + extra;

			start(sf[i].type);
			switch (sf[i].type) {
			case QR_BEGIN:
				if (sf[i].tag != QR_BEGIN_USER)
					field_str(QR_BEGIN_USER, "u");
				if (sf[i].tag != QR_BEGIN_SERVICE)
					field_str(QR_BEGIN_SERVICE, "s");
				break;
			case QR_CHALLENGE:
				challenge(sf[i].tag == QR_CHALLENGE_QR_TEXT ? 0 : 1,
				    sf[i].tag == QR_CHALLENGE_PROMPT ? 0 : 1,
				    sf[i].tag == QR_CHALLENGE_PAYLOAD ? 0 : 1);
				/* drop the field under test, then add it at the tested length */
				{
					static struct qr_msg m;
					static struct bb copy;

					frame_decode_body(body.b, body.n, &m);
					bb_reset(&copy);
					bb_u8(&copy, QR_CHALLENGE);
					for (uint8_t t = 1; t <= 5; t++) {
						if (t == sf[i].tag)
							continue;
						bb_u8(&copy, t);
						bb_u16(&copy, m.f[t].len);
						bb_put(&copy, m.f[t].val, m.f[t].len);
					}
					body = copy;
				}
				break;
			case QR_VERDICT:
				field_u8(QR_VERDICT_RESULT, 6);
				break;
			default:
				break;
			}
			field_fill(sf[i].tag, sf[i].tag == QR_CODE_DIGITS ? '7' : 'a', len);
			snprintf(name, sizeof(name), "%s of %zu bytes (max %zu)", sf[i].name, len, sf[i].max);
			run_case(name, framed(), extra ? QR_FRAME_E_SIZE : QR_FRAME_DONE, NULL);
		}
	}

	/* All strings of a CHALLENGE at their max at once still fit in a frame. */
	challenge(12288, 512, 256);
	run_case("CHALLENGE with every string at its max", framed(), QR_FRAME_DONE, NULL);

	/* Integers must have exactly their width. */
	static const struct { uint8_t type, tag; size_t width; const char *name; } ints[] = {
		{ QR_BEGIN, QR_BEGIN_MODE, 1, "BEGIN.mode" },
		{ QR_BEGIN, QR_BEGIN_QR, 1, "BEGIN.qr" },
		{ QR_BEGIN, QR_BEGIN_TIMEOUT, 4, "BEGIN.timeout" },
		{ QR_BEGIN, QR_BEGIN_UID, 4, "BEGIN.uid" },
		{ QR_WAIT, QR_WAIT_MAX_WAIT, 4, "WAIT.max_wait" },
		{ QR_VERDICT, QR_VERDICT_TRIES_LEFT, 1, "VERDICT.tries_left" },
		{ QR_VERDICT, QR_VERDICT_RESULT, 1, "VERDICT.result" },
	};
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		for (size_t w = 0; w <= 5; w++) {
			start(ints[i].type);
			if (ints[i].type == QR_BEGIN) {
				field_str(QR_BEGIN_USER, "u");
				field_str(QR_BEGIN_SERVICE, "s");
			}
			if (ints[i].type == QR_VERDICT && ints[i].tag != QR_VERDICT_RESULT)
				field_u8(QR_VERDICT_RESULT, 3);
			field_fill(ints[i].tag, 1, w);
			snprintf(name, sizeof(name), "%s of %zu bytes (width %zu)", ints[i].name, w,
			    ints[i].width);
			run_case(name, framed(), w == ints[i].width ? QR_FRAME_DONE : QR_FRAME_E_SIZE, NULL);
		}
	}
}

static void
framing_cases(void)
{
	static const struct { const char *name, *bytes; size_t n; int want; } raw[] = {
		{ "length 0", "\0\0\0\0", 4, QR_FRAME_E_LENGTH },
		{ "length 16385 is refused on the header", "\0\0\x40\x01", 4, QR_FRAME_E_LENGTH },
		{ "length 0xffffffff", "\xff\xff\xff\xff", 4, QR_FRAME_E_LENGTH },
		{ "type 0x00", "\0\0\0\1\0", 5, QR_FRAME_E_TYPE },
		{ "RENDER without qr", "\0\0\0\1\4", 5, QR_FRAME_E_MISSING },
		{ "RENDER qr=ascii", "\0\0\0\5\4\1\0\1\1", 9, QR_FRAME_DONE },
		{ "RENDER qr of 2 bytes", "\0\0\0\6\4\1\0\2\0\1", 10, QR_FRAME_E_SIZE },
		{ "tag 2 on RENDER", "\0\0\0\x09\4\1\0\1\1\2\0\1\1", 13, QR_FRAME_E_TAG },
		{ "type 0x05", "\0\0\0\1\5", 5, QR_FRAME_E_TYPE },
		{ "type 0x80", "\0\0\0\1\x80", 5, QR_FRAME_E_TYPE },
		{ "type 0x83", "\0\0\0\1\x83", 5, QR_FRAME_E_TYPE },
		{ "type 0xff", "\0\0\0\1\xff", 5, QR_FRAME_E_TYPE },
		{ "WAIT with no fields", "\0\0\0\1\2", 5, QR_FRAME_DONE },
		{ "VERDICT with no fields", "\0\0\0\1\x82", 5, QR_FRAME_E_MISSING },
		{ "field header of 1 byte", "\0\0\0\2\2\1", 6, QR_FRAME_E_TRUNC },
		{ "field header of 2 bytes", "\0\0\0\3\2\1\0", 7, QR_FRAME_E_TRUNC },
		{ "field value past the end", "\0\0\0\7\2\1\0\4\0\0\0", 11, QR_FRAME_E_TRUNC },
		{ "field length 0xffff past the end", "\0\0\0\4\x82\1\xff\xff", 8, QR_FRAME_E_TRUNC },
		{ "tag 0", "\0\0\0\4\2\0\0\0", 8, QR_FRAME_E_TAG },
		{ "tag 2 on WAIT", "\0\0\0\4\2\2\0\0", 8, QR_FRAME_E_TAG },
		{ "tag 15 on BEGIN (past the last)", "\0\0\0\4\1\x0f\0\0", 8, QR_FRAME_E_TAG },
		{ "tag 13 (uv) on BEGIN with a 0-byte value", "\0\0\0\4\1\x0d\0\0", 8, QR_FRAME_E_SIZE },
		{ "tag 9 (BEGIN's uid) on VERDICT", "\0\0\0\x0c\x82\1\0\1\0\x09\0\4\0\0\0\0", 16,
		  QR_FRAME_E_TAG },
		{ "tag 10 (BEGIN's home) on CODE", "\0\0\0\x09\3\1\0\1\x31\x0a\0\1/", 13,
		  QR_FRAME_E_TAG },
		{ "tag 255 on VERDICT", "\0\0\0\4\x82\xff\0\0", 8, QR_FRAME_E_TAG },
		{ "tag 4 on VERDICT", "\0\0\0\x08\x82\1\0\1\0\4\0\0", 12, QR_FRAME_E_TAG },
		{ "tag repeated", "\0\0\0\x09\x82\1\0\1\0\1\0\1\0", 13, QR_FRAME_E_DUP },
		{ "truncation is checked before a repeated tag", "\0\0\0\x09\x82\1\0\1\0\1\0\2\0", 13,
		  QR_FRAME_E_TRUNC },
		{ "truncation is checked before the tag", "\0\0\0\4\x82\x09\0\1", 8, QR_FRAME_E_TRUNC },
		{ "CODE without digits", "\0\0\0\1\3", 5, QR_FRAME_E_MISSING },
		{ "BEGIN without service", "\0\0\0\x05\1\1\0\1u", 9, QR_FRAME_E_MISSING },
		{ "NUL in a string", "\0\0\0\6\3\1\0\2\x31\0", 10, QR_FRAME_E_STRING },
		{ "0xff in a string", "\0\0\0\5\3\1\0\1\xff", 9, QR_FRAME_E_STRING },
		{ "overlong '/' (c0 af)", "\0\0\0\6\3\1\0\2\xc0\xaf", 10, QR_FRAME_E_STRING },
		{ "overlong e0 80 80", "\0\0\0\7\3\1\0\3\xe0\x80\x80", 11, QR_FRAME_E_STRING },
		{ "UTF-16 surrogate ed a0 80", "\0\0\0\7\3\1\0\3\xed\xa0\x80", 11, QR_FRAME_E_STRING },
		{ "above U+10FFFF f4 90 80 80", "\0\0\0\x08\3\1\0\4\xf4\x90\x80\x80", 12, QR_FRAME_E_STRING },
		{ "f5 lead byte", "\0\0\0\x08\3\1\0\4\xf5\x80\x80\x80", 12, QR_FRAME_E_STRING },
		{ "multibyte cut at the string end", "\0\0\0\6\3\1\0\2\xe2\x82", 10, QR_FRAME_E_STRING },
		{ "lone continuation byte", "\0\0\0\5\3\1\0\1\x80", 9, QR_FRAME_E_STRING },
		{ "valid 2/3/4-byte UTF-8", "\0\0\0\x0d\3\1\0\x09\xc3\xa9\xe2\x82\xac\xf0\x9f\x94\x91",
		  17, QR_FRAME_DONE },
		{ "U+FFFF and U+10FFFF", "\0\0\0\x0b\3\1\0\7\xef\xbf\xbf\xf4\x8f\xbf\xbf", 15,
		  QR_FRAME_DONE },
	};
	static struct bb in;
	uint8_t big[4 + 16384];

	for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
		bb_reset(&in);
		bb_put(&in, raw[i].bytes, raw[i].n);
		run_case(raw[i].name, &in, raw[i].want, NULL);
	}

	/* Length exactly QR_MAX_FRAME passes the header check; the body decides. */
	memset(big, 0, sizeof(big));
	big[2] = 0x40;	/* 16384 */
	big[4] = QR_VERDICT;
	big[5] = QR_VERDICT_RESULT;
	big[7] = 1;
	big[9] = QR_VERDICT_MESSAGE;
	big[10] = (uint8_t)((16384 - 9) >> 8);
	big[11] = (uint8_t)(16384 - 9);
	memset(big + 12, 'm', 16384 - 8);
	bb_reset(&in);
	bb_put(&in, big, sizeof(big));
	run_case("frame of exactly 16384 bytes is read, its 16375-byte message refused", &in,
	    QR_FRAME_E_SIZE, NULL);
	big[10] = 0;
	big[11] = 0;	/* empty message, then 'm' bytes: a field of 0x6d6d bytes overruns */
	memcpy(in.b, big, sizeof(big));
	run_case("frame of exactly 16384 bytes with junk after the fields", &in, QR_FRAME_E_TRUNC, NULL);

	start(QR_BEGIN);
	field_u32(QR_BEGIN_TIMEOUT, 90);	/* fields in any order */
	field_str(QR_BEGIN_AUTHFILE, "/etc/qrauth/devices/%u");
	field_u8(QR_BEGIN_QR, 1);
	field_u8(QR_BEGIN_MODE, 2);
	field_str(QR_BEGIN_TTY, "/dev/pts/3");
	field_str(QR_BEGIN_SERVICE, "sshd");
	field_str(QR_BEGIN_RHOST, "203.0.113.7");
	field_str(QR_BEGIN_HOME, "/home/alice");
	field_str(QR_BEGIN_USER, "alice");
	field_u32(QR_BEGIN_UID, 1000);
	run_case("BEGIN with every field, any order", framed(), QR_FRAME_DONE, check_begin);

	start(QR_BEGIN);
	field_str(QR_BEGIN_USER, "alice");
	field_str(QR_BEGIN_SERVICE, "sshd");
	field_u32(QR_BEGIN_UID, 1000);
	field_u32(QR_BEGIN_UID, 1000);
	run_case("BEGIN with uid twice", framed(), QR_FRAME_E_DUP, NULL);

	start(QR_VERDICT);
	field_u8(QR_VERDICT_RESULT, 7);
	run_case("VERDICT with only result", framed(), QR_FRAME_DONE, check_verdict_min);

	start(QR_VERDICT);
	field_u8(QR_VERDICT_RESULT, 250);	/* ranges are the module's business */
	field_str(QR_VERDICT_MESSAGE, "");
	run_case("VERDICT with an empty message", framed(), QR_FRAME_DONE, check_empty_str);

	start(QR_WAIT);
	field_u32(QR_WAIT_MAX_WAIT, 0xffffffffu);
	run_case("WAIT max_wait 0xffffffff", framed(), QR_FRAME_DONE, check_u32_max);

	challenge(3, 3, 3);
	field_u8(QR_CHALLENGE_MODE, 2);
	run_case("CHALLENGE with mode twice", framed(), QR_FRAME_E_DUP, NULL);

	/* Each required CHALLENGE field missing. */
	for (uint8_t skip = 1; skip <= 5; skip++) {
		char name[64];

		start(QR_CHALLENGE);
		if (skip != 1)
			field_str(QR_CHALLENGE_QR_TEXT, "qr\n");
		if (skip != 2)
			field_str(QR_CHALLENGE_PROMPT, "p");
		if (skip != 3)
			field_u32(QR_CHALLENGE_EXPIRES, 90);
		if (skip != 4)
			field_u8(QR_CHALLENGE_MODE, 1);
		if (skip != 5)
			field_str(QR_CHALLENGE_PAYLOAD, "x");
		snprintf(name, sizeof(name), "CHALLENGE without tag %u", skip);
		run_case(name, framed(), QR_FRAME_E_MISSING, NULL);
	}
}

static void
encoder(void)
{
	static struct qr_frame fr;
	static struct qr_msg m;
	size_t used;
	char s[300];
	int rc;

	frame_begin(&fr, QR_BEGIN);
	frame_add_str(&fr, QR_BEGIN_USER, "alice");
	frame_add_str(&fr, QR_BEGIN_RHOST, "203.0.113.7");
	frame_add_str(&fr, QR_BEGIN_SERVICE, "sshd");
	frame_add_str(&fr, QR_BEGIN_TTY, "/dev/pts/3");
	frame_add_u8(&fr, QR_BEGIN_MODE, 2);
	frame_add_u8(&fr, QR_BEGIN_QR, 1);
	frame_add_u32(&fr, QR_BEGIN_TIMEOUT, 90);
	frame_add_str(&fr, QR_BEGIN_AUTHFILE, "/etc/qrauth/devices/%u");
	frame_add_u32(&fr, QR_BEGIN_UID, 1000);
	frame_add_str(&fr, QR_BEGIN_HOME, "/home/alice");
	CHECK(frame_finish(&fr) == 0, "encode BEGIN");
	frame_parser_init(&parser);
	rc = frame_parser_feed(&parser, fr.data, fr.len, &used, &m);
	CHECK(rc == QR_FRAME_DONE && used == fr.len, "BEGIN round trip");
	if (rc == QR_FRAME_DONE)
		check_begin(&m);
	CHECK(memcmp(m.f[QR_BEGIN_TTY].val, "/dev/pts/3", 10) == 0, "tty round trip");

	/* Known bytes (shared with protocol/src/frame.ts encodeFrame). */
	frame_begin(&fr, QR_CODE);
	frame_add_str(&fr, QR_CODE_DIGITS, "12345678");
	CHECK(frame_finish(&fr) == 0 && fr.len == 16 &&
	    memcmp(fr.data, "\0\0\0\x0c\x03\x01\x00\x08" "12345678", 16) == 0, "CODE bytes");
	frame_begin(&fr, QR_WAIT);
	CHECK(frame_finish(&fr) == 0 && fr.len == 5 && memcmp(fr.data, "\0\0\0\1\2", 5) == 0,
	    "empty WAIT bytes");
	frame_begin(&fr, QR_WAIT);
	frame_add_u32(&fr, QR_WAIT_MAX_WAIT, 60000);
	CHECK(frame_finish(&fr) == 0 && fr.len == 12 &&
	    memcmp(fr.data, "\0\0\0\x08\x02\x01\x00\x04\x00\x00\xea\x60", 12) == 0, "WAIT bytes");
	frame_begin(&fr, QR_RENDER);
	frame_add_u8(&fr, QR_RENDER_QR, QR_QR_TEXT);
	CHECK(frame_finish(&fr) == 0 && fr.len == 9 &&
	    memcmp(fr.data, "\0\0\0\x05\x04\x01\x00\x01\x02", 9) == 0, "RENDER bytes");
	frame_begin(&fr, QR_RENDER);
	CHECK(frame_finish(&fr) == QR_FRAME_E_MISSING, "encode RENDER without qr");
	frame_begin(&fr, QR_VERDICT);
	frame_add_u8(&fr, QR_VERDICT_RESULT, QR_CODE_WRONG);
	frame_add_str(&fr, QR_VERDICT_MESSAGE, "Wrong code");
	frame_add_u8(&fr, QR_VERDICT_TRIES_LEFT, 2);
	CHECK(frame_finish(&fr) == 0, "encode VERDICT");
	CHECK(frame_decode_body(fr.data + 4, fr.len - 4, &m) == QR_FRAME_DONE &&
	    m.f[QR_VERDICT_RESULT].num == 3 && m.f[QR_VERDICT_TRIES_LEFT].num == 2 &&
	    m.f[QR_VERDICT_MESSAGE].len == 10, "VERDICT round trip");

	/* The encoder refuses what the parser would refuse. */
	frame_begin(&fr, 0x42);
	CHECK(frame_finish(&fr) == QR_FRAME_E_TYPE, "encode unknown type");
	frame_begin(&fr, QR_CODE);
	frame_add_str(&fr, QR_CODE_DIGITS, "12345678901234567");
	CHECK(frame_finish(&fr) == QR_FRAME_E_SIZE, "encode 17 digits");
	frame_begin(&fr, QR_CODE);
	frame_add_str(&fr, QR_CODE_DIGITS, "1234567890123456");
	CHECK(frame_finish(&fr) == 0, "encode 16 digits");
	frame_begin(&fr, QR_CODE);
	frame_add_u8(&fr, QR_CODE_DIGITS, 1);
	CHECK(frame_finish(&fr) == QR_FRAME_E_TAG, "encode u8 into a string tag");
	frame_begin(&fr, QR_CODE);
	frame_add_str(&fr, 2, "1");
	CHECK(frame_finish(&fr) == QR_FRAME_E_TAG, "encode unknown tag");
	frame_begin(&fr, QR_CODE);
	CHECK(frame_finish(&fr) == QR_FRAME_E_MISSING, "encode without a required field");
	frame_begin(&fr, QR_CODE);
	frame_add_str(&fr, QR_CODE_DIGITS, "1");
	frame_add_str(&fr, QR_CODE_DIGITS, "2");
	CHECK(frame_finish(&fr) == QR_FRAME_E_DUP, "encode a repeated tag");
	frame_begin(&fr, QR_CODE);
	frame_add_str(&fr, QR_CODE_DIGITS, "\xc0\xaf");
	CHECK(frame_finish(&fr) == QR_FRAME_E_STRING, "encode invalid UTF-8");
	frame_begin(&fr, QR_CODE);
	frame_add_str(&fr, QR_CODE_DIGITS, NULL);
	CHECK(frame_finish(&fr) == QR_FRAME_E_STATE, "encode NULL string");
	memset(s, 'u', 257);
	s[257] = '\0';
	frame_begin(&fr, QR_BEGIN);
	frame_add_str(&fr, QR_BEGIN_USER, s);
	frame_add_str(&fr, QR_BEGIN_SERVICE, "sshd");
	CHECK(frame_finish(&fr) == QR_FRAME_E_SIZE, "encode 257-byte user");
	s[256] = '\0';
	frame_begin(&fr, QR_BEGIN);
	frame_add_str(&fr, QR_BEGIN_USER, s);
	frame_add_str(&fr, QR_BEGIN_SERVICE, "sshd");
	CHECK(frame_finish(&fr) == 0, "encode 256-byte user");
	{
		static char home[1026];

		memset(home, 'h', 1025);
		home[0] = '/';
		frame_begin(&fr, QR_BEGIN);
		frame_add_str(&fr, QR_BEGIN_USER, "alice");
		frame_add_str(&fr, QR_BEGIN_SERVICE, "sshd");
		frame_add_str(&fr, QR_BEGIN_HOME, home);
		CHECK(frame_finish(&fr) == QR_FRAME_E_SIZE, "encode 1025-byte home");
		home[1024] = '\0';
		frame_begin(&fr, QR_BEGIN);
		frame_add_str(&fr, QR_BEGIN_USER, "alice");
		frame_add_str(&fr, QR_BEGIN_SERVICE, "sshd");
		frame_add_u32(&fr, QR_BEGIN_UID, 0xffffffffu);
		frame_add_str(&fr, QR_BEGIN_HOME, home);
		CHECK(frame_finish(&fr) == 0, "encode 1024-byte home");
		CHECK(frame_decode_body(fr.data + 4, fr.len - 4, &m) == QR_FRAME_DONE &&
		    m.f[QR_BEGIN_HOME].len == 1024 && m.f[QR_BEGIN_UID].num == 0xffffffffu,
		    "1024-byte home and uid 0xffffffff round trip");
	}
	frame_wipe(&fr);
	CHECK(frame_finish(&fr) != 0, "a wiped frame cannot be sent");
	printf("ok - encoder\n");
}

int
main(void)
{
	framing_cases();
	limits();
	encoder();
	frame_parser_wipe(&parser);
	CHECK(frame_parser_need(&parser) == 0, "wiped parser needs nothing");
	printf("1..%d\n# %d checks passed, %d failed\n", n_ok + n_fail, n_ok, n_fail);
	return n_fail == 0 ? 0 : 1;
}
