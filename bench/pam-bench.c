/*
 * The PAM side of qrauth for benchmarks: speaks the framed protocol on the agent socket with
 * the module's own frame.c (encoder and bounded parser), as pam_qrauth.so does, minus libpam.
 *
 *   pam-bench seq  SOCKET N USER HOME   N logins one after another: connect, BEGIN, CHALLENGE,
 *                                       close. Prints one latency (microseconds) a line.
 *   pam-bench hold SOCKET N USER HOME   N logins kept open: BEGIN, CHALLENGE, then WAIT on each.
 *                                       Prints the N challenge latencies, then "HELD", then
 *                                       keeps them pending until stdin closes.
 *
 * Exit status 0 only if every reply was a CHALLENGE (a benchmark of errors measures nothing).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"

static struct qr_parser parser;
static struct qr_frame tx;

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int
write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
connect_agent(const char *path)
{
	struct sockaddr_un sa;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		close(fd);
		return -1;
	}
	strcpy(sa.sun_path, path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Read exactly one frame; returns its type or -1. */
static int
read_reply(int fd)
{
	struct qr_msg msg;
	uint8_t buf[4096];

	frame_parser_init(&parser);
	for (;;) {
		size_t want = frame_parser_need(&parser), used = 0;
		ssize_t r;
		int rc;

		if (want > sizeof(buf))
			want = sizeof(buf);
		/* Read no more than the frame needs, so nothing of a later frame is lost. */
		r = read(fd, buf, want);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		rc = frame_parser_feed(&parser, buf, (size_t)r, &used, &msg);
		if (rc == QR_FRAME_DONE)
			return msg.type;
		if (rc != QR_FRAME_MORE)
			return -1;
	}
}

static int
send_begin(int fd, const char *user, const char *home, unsigned i)
{
	char rhost[32];

	snprintf(rhost, sizeof(rhost), "198.51.100.%u", i % 250 + 1);
	frame_begin(&tx, QR_BEGIN);
	frame_add_str(&tx, QR_BEGIN_USER, user);
	frame_add_str(&tx, QR_BEGIN_RHOST, rhost);
	frame_add_str(&tx, QR_BEGIN_SERVICE, "sshd");
	frame_add_str(&tx, QR_BEGIN_TTY, "ssh");
	frame_add_u8(&tx, QR_BEGIN_MODE, QR_MODE_AUTO);
	frame_add_u8(&tx, QR_BEGIN_QR, QR_QR_UTF8);
	frame_add_u32(&tx, QR_BEGIN_TIMEOUT, 90);
	frame_add_u32(&tx, QR_BEGIN_UID, 0);
	frame_add_str(&tx, QR_BEGIN_HOME, home);
	if (frame_finish(&tx) != 0)
		return -1;
	return write_all(fd, tx.data, tx.len);
}

/* One login up to its CHALLENGE; returns the connected fd, or -1. *lat gets microseconds. */
static int
challenge(const char *path, const char *user, const char *home, unsigned i, int64_t *lat)
{
	int64_t t0 = now_us();
	int fd = connect_agent(path);

	if (fd < 0)
		return -1;
	if (send_begin(fd, user, home, i) != 0 || read_reply(fd) != QR_CHALLENGE) {
		close(fd);
		return -1;
	}
	*lat = now_us() - t0;
	return fd;
}

int
main(int argc, char **argv)
{
	unsigned n;
	int64_t *lat;
	int hold;

	if (argc != 6 || (strcmp(argv[1], "seq") != 0 && strcmp(argv[1], "hold") != 0)) {
		fprintf(stderr, "usage: pam-bench seq|hold SOCKET N USER HOME\n");
		return 2;
	}
	hold = strcmp(argv[1], "hold") == 0;
	n = (unsigned)strtoul(argv[3], NULL, 10);
	if (n == 0 || n > 100000 || (lat = calloc(n, sizeof(*lat))) == NULL)
		return 2;
	int *fds = calloc(n, sizeof(int));

	if (fds == NULL)
		return 2;
	for (unsigned i = 0; i < n; i++) {
		fds[i] = challenge(argv[2], argv[4], argv[5], i, &lat[i]);
		if (fds[i] < 0) {
			fprintf(stderr, "pam-bench: login %u got no CHALLENGE: %s\n", i, strerror(errno));
			return 1;
		}
		if (!hold) {
			close(fds[i]);
			continue;
		}
		frame_begin(&tx, QR_WAIT);
		if (frame_finish(&tx) != 0 || write_all(fds[i], tx.data, tx.len) != 0) {
			fprintf(stderr, "pam-bench: WAIT %u failed\n", i);
			return 1;
		}
	}
	for (unsigned i = 0; i < n; i++)
		printf("%lld\n", (long long)lat[i]);
	if (hold) {
		char c;

		printf("HELD\n");
		fflush(stdout);
		while (read(0, &c, 1) > 0)
			;
		for (unsigned i = 0; i < n; i++)
			close(fds[i]);
	}
	free(fds);
	free(lat);
	return 0;
}
