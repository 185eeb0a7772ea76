/*
 * Agent client. Every wait is a poll() bounded by an absolute monotonic deadline that the
 * caller derives from the login's overall timeout, so a stalled or silent agent cannot
 * hold a login (or sshd) longer than configured.
 */
#define _GNU_SOURCE	/* struct ucred */
#include "agent.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int64_t
qr_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until fd is ready for events or the deadline passes. */
static int
wait_fd(int fd, short events, int64_t deadline_ms)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = events };
		int64_t left = deadline_ms - qr_now_ms();
		int n;

		if (left <= 0)
			return QR_AGENT_E_TIMEOUT;
		n = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return QR_AGENT_E_IO;
		if (n == 0)
			continue;	/* the loop re-checks the deadline */
		if (pfd.revents & POLLNVAL)
			return QR_AGENT_E_IO;
		/* Ready, POLLHUP (the read sees EOF) or POLLERR: the next recv/send returns the
		 * socket's pending error, so ECONNRESET (an agent that closed without reading our
		 * request, as a stopping agent does) is told apart from other failures there. */
		return QR_AGENT_OK;
	}
}

int
write_full(int fd, const void *buf, size_t n, int64_t deadline_ms)
{
	const uint8_t *p = buf;

	while (n > 0) {
		/* MSG_NOSIGNAL: a dead agent must not SIGPIPE sshd. */
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		int rc;

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if ((rc = wait_fd(fd, POLLOUT, deadline_ms)) != QR_AGENT_OK)
				return rc;
			continue;
		}
		if (w < 0)
			return errno == EPIPE || errno == ECONNRESET ? QR_AGENT_E_CLOSED : QR_AGENT_E_IO;
		p += w;
		n -= (size_t)w;
	}
	return QR_AGENT_OK;
}

int
read_full(int fd, void *buf, size_t n, int64_t deadline_ms, size_t *seen)
{
	uint8_t *p = buf;

	while (n > 0) {
		ssize_t r = recv(fd, p, n, MSG_DONTWAIT);
		int rc;

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if ((rc = wait_fd(fd, POLLIN, deadline_ms)) != QR_AGENT_OK)
				return rc;
			continue;
		}
		if (r < 0)
			return errno == ECONNRESET ? QR_AGENT_E_CLOSED : QR_AGENT_E_IO;
		if (r == 0)
			return QR_AGENT_E_CLOSED;
		if (seen != NULL)
			*seen += (size_t)r;
		p += r;
		n -= (size_t)r;
	}
	return QR_AGENT_OK;
}

void
agent_init(struct qr_agent *a)
{
	a->fd = -1;
	a->sys_errno = 0;
	a->frame_err = 0;
	a->rx_seen = 0;
	frame_parser_init(&a->rx);
	a->tx.len = 0;
	a->tx.err = QR_FRAME_E_STATE;
}

int
agent_connect(struct qr_agent *a, const char *path, int64_t deadline_ms)
{
	struct sockaddr_un sun;
	size_t plen = strlen(path);

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (plen >= sizeof(sun.sun_path)) {
		a->sys_errno = ENAMETOOLONG;
		return QR_AGENT_E_CONNECT;
	}
	memcpy(sun.sun_path, path, plen + 1);
	if ((a->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		goto fail;
	for (;;) {
		int64_t left = deadline_ms - qr_now_ms();
		struct timeval tv;

		if (left <= 0) {
			errno = ETIMEDOUT;
			goto fail;
		}
		/* A blocking AF_UNIX connect waits while the listen backlog is full (the agent
		 * restarting behind systemd socket activation, or too busy to accept); SO_SNDTIMEO
		 * bounds that wait, and then connect() fails with EAGAIN. */
		tv.tv_sec = left / 1000;
		tv.tv_usec = (left % 1000) * 1000;
		if (setsockopt(a->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0)
			goto fail;
		if (connect(a->fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
			return QR_AGENT_OK;
		if (errno != EINTR)
			goto fail;
		/* A signal cut that wait short. Unlike TCP, an AF_UNIX connect does not go on in the
		 * background: the socket is still unconnected, so try again with the time left. */
	}
fail:
	a->sys_errno = errno;
	if (a->fd >= 0)
		close(a->fd);
	a->fd = -1;
	/* Only "nobody there" is agent down; an agent that is there but does not take the
	 * connection in time (EAGAIN, ETIMEDOUT) may be wedged or flooded, and is not. */
	return a->sys_errno == ENOENT || a->sys_errno == ECONNREFUSED ? QR_AGENT_E_NOAGENT :
	    QR_AGENT_E_CONNECT;
}

int
agent_peer_uid(struct qr_agent *a, uid_t *uid)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	memset(&cr, 0, sizeof(cr));
	if (a->fd < 0) {
		a->sys_errno = EBADF;
	} else if (getsockopt(a->fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) {
		a->sys_errno = errno;
	} else if (len != sizeof(cr)) {
		a->sys_errno = EPROTO;
	} else {
		*uid = cr.uid;
		return QR_AGENT_OK;
	}
	return QR_AGENT_E_IO;
}

int
agent_request(struct qr_agent *a, struct qr_msg *reply, int64_t deadline_ms)
{
	uint8_t chunk[512];
	int rc;

	memset(reply, 0, sizeof(*reply));
	a->rx_seen = 0;
	if (a->fd < 0 || a->tx.err != 0 || a->tx.len < 5)
		return QR_AGENT_E_IO;
	rc = write_full(a->fd, a->tx.data, a->tx.len, deadline_ms);
	explicit_bzero(a->tx.data, a->tx.len);	/* a CODE frame holds the typed digits */
	a->tx.err = QR_FRAME_E_STATE;		/* a request is sent once */
	if (rc != QR_AGENT_OK)
		goto out;

	frame_parser_init(&a->rx);
	for (;;) {
		/* Read no more than the frame still needs, so nothing past it is consumed. */
		size_t want = frame_parser_need(&a->rx), used;

		if (want > sizeof(chunk))
			want = sizeof(chunk);
		/* rx_seen counts a part of a header too: a reply cut there is not "no reply". */
		if ((rc = read_full(a->fd, chunk, want, deadline_ms, &a->rx_seen)) != QR_AGENT_OK)
			break;
		rc = frame_parser_feed(&a->rx, chunk, want, &used, reply);
		if (rc == QR_FRAME_MORE)
			continue;
		if (rc != QR_FRAME_DONE) {
			a->frame_err = rc;
			rc = QR_AGENT_E_FRAME;
		} else {
			rc = QR_AGENT_OK;
		}
		break;
	}
	explicit_bzero(chunk, sizeof(chunk));
out:
	if (rc != QR_AGENT_OK && rc != QR_AGENT_E_FRAME)
		a->sys_errno = errno;
	return rc;
}

void
agent_close(struct qr_agent *a)
{
	if (a->fd >= 0)
		close(a->fd);
	a->fd = -1;
	frame_parser_wipe(&a->rx);
	frame_wipe(&a->tx);
}

const char *
agent_strerror(int status)
{
	switch (status) {
	case QR_AGENT_OK: return "ok";
	case QR_AGENT_E_CONNECT: return "cannot connect to the agent";
	case QR_AGENT_E_IO: return "i/o error on the agent socket";
	case QR_AGENT_E_TIMEOUT: return "the agent did not answer in time";
	case QR_AGENT_E_CLOSED: return "the agent closed the connection";
	case QR_AGENT_E_FRAME: return "malformed frame from the agent";
	case QR_AGENT_E_NOAGENT: return "no agent is listening on the socket";
	default: return "unknown agent error";
	}
}
