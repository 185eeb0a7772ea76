/* Client side of the agent socket: connect, send one frame, receive one frame, with deadlines. */
#ifndef QR_AGENT_H
#define QR_AGENT_H

#include <stdint.h>
#include <sys/types.h>

#include "frame.h"

enum qr_agent_status {
	QR_AGENT_OK = 0,
	QR_AGENT_E_CONNECT = -1,	/* connect failed with someone there: backlog full (EAGAIN), timed out, no permission, ... */
	QR_AGENT_E_IO = -2,		/* read/write error */
	QR_AGENT_E_TIMEOUT = -3,	/* deadline passed mid-exchange */
	QR_AGENT_E_CLOSED = -4,		/* agent closed the connection (maybe mid-frame) */
	QR_AGENT_E_FRAME = -5,		/* reply is not a valid frame (see frame_err) */
	QR_AGENT_E_NOAGENT = -6,	/* nobody listens: no socket file (ENOENT) or no listener (ECONNREFUSED) */
};

/* One login's connection. Allocated once (it holds the two bounded frame buffers). */
struct qr_agent {
	int fd;
	int sys_errno;		/* errno of the last failure, for logs */
	int frame_err;		/* QR_FRAME_E_* of the last QR_AGENT_E_FRAME */
	size_t rx_seen;		/* reply bytes read by the last agent_request(), a cut-off one too */
	struct qr_parser rx;
	struct qr_frame tx;	/* build the request here, then agent_request() */
};

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t qr_now_ms(void);

void agent_init(struct qr_agent *a);
/* QR_AGENT_OK, QR_AGENT_E_NOAGENT (agent down: what failmode=open may step aside for) or
 * QR_AGENT_E_CONNECT (anything else, e.g. an agent too busy to accept before the deadline). */
int agent_connect(struct qr_agent *a, const char *path, int64_t deadline_ms);
/* The uid of whoever listens on the other end (SO_PEERCRED: the credentials of the process
 * that called listen(), e.g. systemd for socket activation). QR_AGENT_OK or QR_AGENT_E_IO. */
int agent_peer_uid(struct qr_agent *a, uid_t *uid);
/* Send a->tx (already frame_finish()ed), then read exactly one reply frame into *reply.
 * The reply's strings live in a->rx until the next request. */
int agent_request(struct qr_agent *a, struct qr_msg *reply, int64_t deadline_ms);
/* Close and wipe both buffers. Safe to call twice. */
void agent_close(struct qr_agent *a);
const char *agent_strerror(int status);

/* Full-length I/O on a non-blocking-used socket: retry EINTR, poll until deadline. read_full
 * adds every byte it read to *seen (if not NULL), also when it fails part way. */
int write_full(int fd, const void *buf, size_t n, int64_t deadline_ms);
int read_full(int fd, void *buf, size_t n, int64_t deadline_ms, size_t *seen);

#endif
