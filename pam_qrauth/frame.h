/*
 * The framed binary protocol on the agent socket (docs/protocol.md section 1), C side.
 * The TypeScript side is protocol/src/frame.ts; both accept exactly the same bytes.
 *
 *   frame = length:u32be body        ; 1 <= length <= QR_MAX_FRAME
 *   body  = type:u8 field*
 *   field = tag:u8 len:u16be value[len]
 */
#ifndef QR_FRAME_H
#define QR_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define QR_MAX_FRAME 16384u
#define QR_MAX_TAG 14

/* Message types. */
#define QR_BEGIN 0x01
#define QR_WAIT 0x02
#define QR_CODE 0x03
#define QR_RENDER 0x04	/* show the same session's QR in another style; answered by CHALLENGE */
#define QR_CHALLENGE 0x81
#define QR_VERDICT 0x82

/* Tags, by message. */
#define QR_BEGIN_USER 1
#define QR_BEGIN_RHOST 2
#define QR_BEGIN_SERVICE 3
#define QR_BEGIN_TTY 4
#define QR_BEGIN_MODE 5
#define QR_BEGIN_QR 6
#define QR_BEGIN_TIMEOUT 7
#define QR_BEGIN_AUTHFILE 8
#define QR_BEGIN_UID 9
#define QR_BEGIN_HOME 10
#define QR_BEGIN_LEASE 11	/* u8: this PAM line allows leases (option `lease`) */
#define QR_BEGIN_AUTH_INFO 12	/* sshd's SSH_AUTH_INFO_0: the methods it verified */
#define QR_BEGIN_UV 13		/* u8: 1 = this PAM line requires user verification (option uv=required) */
#define QR_BEGIN_RUSER 14	/* PAM_RUSER: who asked (su and sudo set the caller's name); per-caller limit */
#define QR_MAX_AUTH_INFO 8192
#define QR_WAIT_MAX_WAIT 1
#define QR_CODE_DIGITS 1
#define QR_RENDER_QR 1		/* u8: QR_QR_* */
#define QR_CHALLENGE_QR_TEXT 1
#define QR_CHALLENGE_PROMPT 2
#define QR_CHALLENGE_EXPIRES 3
#define QR_CHALLENGE_MODE 4
#define QR_CHALLENGE_PAYLOAD 5
#define QR_VERDICT_RESULT 1
#define QR_VERDICT_MESSAGE 2
#define QR_VERDICT_TRIES_LEFT 3

/* Values. */
#define QR_MODE_AUTO 0
#define QR_MODE_PROMPT 1
#define QR_MODE_INFO 2
#define QR_QR_UTF8 0
#define QR_QR_ASCII 1
#define QR_QR_TEXT 2		/* no picture: the payload as text, for the app's paste field */

#define QR_APPROVED 0
#define QR_DENIED 1
#define QR_EXPIRED 2
#define QR_CODE_WRONG 3
#define QR_NO_DEVICE 4
#define QR_OFFLINE 5
#define QR_ERROR 6
#define QR_LOCKED 7

/* Framing errors (negative) and parser progress (non-negative). */
enum qr_frame_status {
	QR_FRAME_DONE = 0,	/* one whole, valid message decoded */
	QR_FRAME_MORE = 1,	/* all input consumed, frame not complete yet */
	QR_FRAME_E_LENGTH = -1,	/* frame length 0 or over QR_MAX_FRAME */
	QR_FRAME_E_TYPE = -2,	/* unknown message type */
	QR_FRAME_E_TAG = -3,	/* unknown tag for this type */
	QR_FRAME_E_DUP = -4,	/* tag repeated */
	QR_FRAME_E_SIZE = -5,	/* value longer than its max, or integer of wrong width */
	QR_FRAME_E_TRUNC = -6,	/* field header or value runs past the end of the body */
	QR_FRAME_E_MISSING = -7, /* required field absent */
	QR_FRAME_E_STRING = -8,	/* NUL byte or invalid UTF-8 in a string */
	QR_FRAME_E_STATE = -9,	/* parser used after an error, or bad call */
};

/* One decoded field. Strings point into the parser's buffer and are NOT NUL-terminated. */
struct qr_field {
	int present;
	uint16_t len;
	const uint8_t *val;
	uint32_t num;		/* u8 / u32 value */
};

struct qr_msg {
	uint8_t type;
	struct qr_field f[QR_MAX_TAG + 1];	/* indexed by tag; f[0] unused */
};

/*
 * Incremental parser: feed byte chunks in any split. It never holds more than one frame.
 * Errors are sticky; the caller must close the connection (there is no resynchronisation).
 */
struct qr_parser {
	int state;		/* PS_HEADER, PS_BODY, PS_DONE, PS_ERROR (frame.c) */
	uint32_t need;		/* bytes of the current header/body still missing */
	uint32_t len;		/* body length from the header */
	uint8_t hdr[4];
	uint8_t body[QR_MAX_FRAME];
};

void frame_parser_init(struct qr_parser *p);
/* Bytes the parser still needs to finish the current frame (0 once done or failed). */
size_t frame_parser_need(const struct qr_parser *p);
/*
 * Consume up to n bytes. Returns QR_FRAME_DONE with *out filled (its strings point into p,
 * valid until the next init), QR_FRAME_MORE, or a QR_FRAME_E_* error. *used tells how many
 * bytes were taken; bytes after a complete frame are left for the caller.
 */
int frame_parser_feed(struct qr_parser *p, const uint8_t *in, size_t n, size_t *used,
		      struct qr_msg *out);
/* Decode a whole body (type + fields); the parser uses it, tests may too. */
int frame_decode_body(const uint8_t *body, size_t len, struct qr_msg *out);
/* Wipe the buffer (it may hold a QR payload or digits). */
void frame_parser_wipe(struct qr_parser *p);

/* Encoder with a sticky error, checking every value against the same table as the parser. */
struct qr_frame {
	size_t len;		/* bytes used in data, length prefix included */
	int err;		/* first QR_FRAME_E_* error, or 0 */
	unsigned seen;		/* bit per tag already added */
	uint8_t data[4 + QR_MAX_FRAME];
};

void frame_begin(struct qr_frame *fr, uint8_t type);
void frame_add_str(struct qr_frame *fr, uint8_t tag, const char *s);
void frame_add_u8(struct qr_frame *fr, uint8_t tag, uint8_t v);
void frame_add_u32(struct qr_frame *fr, uint8_t tag, uint32_t v);
/* Write the length prefix and check required fields. Returns 0 or a QR_FRAME_E_* error. */
int frame_finish(struct qr_frame *fr);
void frame_wipe(struct qr_frame *fr);

const char *frame_strerror(int status);
/* Strict UTF-8 (as WHATWG TextDecoder fatal) without NUL; 1 if valid. */
int frame_utf8_ok(const uint8_t *s, size_t n);

#endif
