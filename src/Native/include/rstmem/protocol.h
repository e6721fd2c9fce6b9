/* SPDX-License-Identifier: MIT */
/*
 * rstmem wire protocol: the one definition shared by rstmemd (whose C# side is
 * tested against this header) and every client. docs/protocol.md explains it.
 *
 * Transport: AF_UNIX, SOCK_SEQPACKET. One request per packet, one reply per
 * request, in order. All integers little-endian; all structs are naturally
 * aligned with explicit padding, so their layout is the same on every
 * architecture (checked by the daemon's tests on x86_64, aarch64 and armhf).
 * Strings are fixed-size, NUL-terminated (a field always holds at least one NUL).
 *
 * Every packet starts with struct rstmem_header. A reply has the request's
 * opcode with RSTMEM_REPLY set, the request's request_id, and a payload that
 * starts with struct rstmem_status. On failure (status.error != 0) the status
 * is followed by status.message_length bytes of UTF-8 text and nothing else;
 * on success message_length is 0 and the operation's reply struct follows.
 * An ALLOC reply on success carries exactly one descriptor (SCM_RIGHTS).
 */
#ifndef RSTMEM_PROTOCOL_H
#define RSTMEM_PROTOCOL_H

#include <stdint.h>

#define RSTMEM_PROTOCOL_MAGIC		0x4d545352u	/* "RSTM" as little-endian bytes */
#define RSTMEM_PROTOCOL_VERSION		2		/* the version this header describes */
#define RSTMEM_PROTOCOL_MIN_VERSION	1

#define RSTMEM_MAX_PACKET		8192	/* no request or reply is longer */
#define RSTMEM_MAX_MESSAGE		256	/* longest error text */
#define RSTMEM_HEAP_NAME_LEN		64	/* heap names, use cases, ALLOC targets */
#define RSTMEM_USE_CASE_LEN		32
#define RSTMEM_BUFFER_NAME_LEN		32	/* = DMA_BUF_NAME_LEN: at most 31 characters */
#define RSTMEM_SERVER_NAME_LEN		32

/*
 * Requests a client may have sent and not yet read the reply of, per connection.
 * rstmemd reads no further request from a client while replies to it wait, so a
 * client that sends more without reading may block in send() forever.
 */
#define RSTMEM_MAX_PIPELINE		8

/* Default socket: RSTMEMD_SOCKET, else this path for root, else $XDG_RUNTIME_DIR/rstmemd.sock. */
#define RSTMEM_DEFAULT_SOCKET		"/run/rstmemd/rstmemd.sock"
#define RSTMEM_SOCKET_ENV		"RSTMEMD_SOCKET"

/* ---- header ------------------------------------------------------------ */

enum rstmem_opcode {
	RSTMEM_OP_HELLO		= 1,
	RSTMEM_OP_LIST_HEAPS	= 2,
	RSTMEM_OP_ALLOC		= 3,
	RSTMEM_OP_FREE		= 4,
	RSTMEM_OP_STATS		= 5,
	RSTMEM_OP_USAGE		= 6,	/* version 2 */
};

#define RSTMEM_REPLY			0x8000u	/* set in a reply's opcode */

/*
 * A connection the daemon refuses at accept (over the per-user connection
 * limit) receives one reply with opcode RSTMEM_REPLY alone (no request opcode),
 * request_id 0 and an error status; then the daemon closes it.
 */

struct rstmem_header {
	uint32_t magic;		/* RSTMEM_PROTOCOL_MAGIC */
	uint16_t version;	/* HELLO: the client's highest version; else the negotiated one */
	uint16_t opcode;	/* enum rstmem_opcode, | RSTMEM_REPLY in replies */
	uint32_t request_id;	/* chosen by the client, echoed in the reply */
	uint32_t payload_length;	/* bytes after the header in this packet */
};

struct rstmem_status {
	int32_t error;		/* 0, or a positive Linux errno (EINVAL, ENOMEM, ...) */
	uint32_t message_length;	/* bytes of UTF-8 text following, 0 on success */
};

/* ---- HELLO: version negotiation and server facts ------------------------ */

struct rstmem_hello_request {
	uint16_t min_version;	/* lowest version the client speaks */
	uint16_t max_version;	/* highest version the client speaks */
	uint32_t flags;		/* 0 */
};

enum rstmem_backend {
	RSTMEM_BACKEND_MODEL	= 1,	/* the daemon's in-process reference kernel model */
	RSTMEM_BACKEND_TEE	= 2,	/* v4 TEE_IOC_RSTMEM_ALLOC on /dev/teeN */
	RSTMEM_BACKEND_DMA_HEAP	= 3,	/* /dev/dma_heap nodes */
};

enum rstmem_generation {
	RSTMEM_GENERATION_NONE		= 0,	/* plain heaps (system, CMA, vendor) only */
	RSTMEM_GENERATION_V4		= 1,
	RSTMEM_GENERATION_V6		= 2,
	RSTMEM_GENERATION_MAINLINE	= 3,
};

#define RSTMEM_CAP_USE_CASES		(1u << 0)	/* ALLOC accepts use-case names */
#define RSTMEM_CAP_BUFFER_NAMES		(1u << 1)	/* buffers are named (DMA_BUF_SET_NAME) */
#define RSTMEM_CAP_RELEASE_TRACKING	(1u << 2)	/* the daemon sees each buffer's last close */

struct rstmem_hello_reply {
	uint16_t version;	/* the negotiated version: use it in every later header */
	uint16_t reserved;
	uint32_t capabilities;	/* RSTMEM_CAP_* */
	uint32_t backend;	/* enum rstmem_backend */
	uint32_t generation;	/* enum rstmem_generation */
	uint32_t page_size;	/* allocation granularity in bytes */
	uint32_t heap_count;
	char server[RSTMEM_SERVER_NAME_LEN];	/* e.g. "rstmemd 0.1.0" */
};

/* ---- LIST_HEAPS: empty request; reply = list + count entries ------------ */

#define RSTMEM_HEAP_RESTRICTED		(1u << 0)	/* behind the firewall: no CPU access */
#define RSTMEM_HEAP_MAPPABLE		(1u << 1)	/* mmap of its buffers works */
#define RSTMEM_HEAP_SIZES_KNOWN		(1u << 2)	/* total_bytes and free_bytes are meaningful */

struct rstmem_heap_list {
	uint32_t count;		/* entries that follow */
	uint32_t entry_size;	/* sizeof(struct rstmem_heap_info); step by this */
};

struct rstmem_heap_info {
	char name[RSTMEM_HEAP_NAME_LEN];	/* heap or use-case provider name */
	char use_case[RSTMEM_USE_CASE_LEN];	/* "secure-video", ... or "" */
	uint32_t backend;	/* enum rstmem_backend */
	uint32_t generation;	/* enum rstmem_generation */
	uint32_t page_size;
	uint32_t flags;		/* RSTMEM_HEAP_* */
	uint64_t total_bytes;	/* 0 when unknown */
	uint64_t free_bytes;	/* 0 when unknown */
	uint64_t max_alloc_bytes;	/* largest single ALLOC the daemon would try for this caller */
};

/* ---- ALLOC: reply carries the dma-buf descriptor ------------------------ */

#define RSTMEM_ALLOC_BY_USE_CASE	(1u << 0)	/* target is a use case only */
#define RSTMEM_ALLOC_BY_HEAP		(1u << 1)	/* target is a heap name only */
/* neither: a use case if one has that name, else a heap */

struct rstmem_alloc_request {
	char target[RSTMEM_HEAP_NAME_LEN];	/* use case or heap name */
	uint64_t size;		/* bytes, > 0; rounded up to the page size */
	uint32_t flags;		/* RSTMEM_ALLOC_* */
	uint32_t reserved;	/* 0 */
	char name[RSTMEM_BUFFER_NAME_LEN];	/* buffer name, or "" for the daemon's default */
};

struct rstmem_alloc_reply {
	uint64_t buffer_id;	/* the daemon's id for FREE and logs */
	uint64_t size;		/* the buffer's actual (page-rounded) size */
	char heap[RSTMEM_HEAP_NAME_LEN];	/* the heap it came from */
};

/* ---- FREE: the client is done with a buffer ---------------------------- */
/*
 * The memory returns when the last descriptor anywhere is closed; FREE only
 * ends the daemon's record for this connection. Unknown or foreign id: ENOENT.
 */
struct rstmem_free_request {
	uint64_t buffer_id;
};

struct rstmem_free_reply {
	uint32_t released;	/* 1 if the buffer's last reference is already gone */
	uint32_t reserved;
};

/* ---- STATS: empty request; reply = totals + count per-heap entries ------ */

struct rstmem_stats_reply {
	uint64_t uptime_ms;
	uint64_t allocations;	/* successful ALLOCs since start */
	uint64_t failures;	/* failed ALLOCs since start */
	uint64_t live_buffers;	/* handed out and not yet released */
	uint64_t live_bytes;
	uint32_t clients;	/* connected now */
	uint32_t count;		/* struct rstmem_heap_stats entries that follow */
	uint32_t entry_size;	/* sizeof(struct rstmem_heap_stats) */
	uint32_t reserved;
	uint64_t releases;	/* buffers released (last close anywhere) since start */
	uint64_t release_latency_p99_us;	/* last close to uncharge, 99th percentile (upper bound, power of two) */
	uint64_t release_latency_max_us;	/* last close to uncharge, longest seen (upper bound) */
};

struct rstmem_heap_stats {
	char name[RSTMEM_HEAP_NAME_LEN];
	uint64_t allocations;
	uint64_t failures;
	uint64_t live_buffers;
	uint64_t live_bytes;
	uint64_t total_bytes;	/* pool counters, 0 when unknown */
	uint64_t free_bytes;
	uint64_t largest_free_bytes;
	uint64_t lends;		/* dynamic pools: chunks lent to the secure world */
	uint64_t reclaims;
};

/* ---- USAGE (version 2): a user's own usage and limits --------------------- */
/*
 * Without RSTMEM_USAGE_OF_UID: the caller's uid. With it: request.uid, which
 * only root or a member of an admin group may ask about (else EACCES).
 * The reply is followed by count struct rstmem_heap_usage entries.
 */
#define RSTMEM_USAGE_OF_UID		(1u << 0)

struct rstmem_usage_request {
	uint32_t uid;		/* with RSTMEM_USAGE_OF_UID */
	uint32_t flags;		/* RSTMEM_USAGE_OF_UID, or 0 */
};

#define RSTMEM_USAGE_ADMIN		(1u << 0)	/* the caller may see every user */
#define RSTMEM_NO_UID			0xffffffffu

struct rstmem_usage_reply {
	uint32_t uid;		/* whose usage this is */
	uint32_t flags;		/* RSTMEM_USAGE_ADMIN */
	uint32_t next_uid;	/* admins: the next uid above this one holding buffers; RSTMEM_NO_UID: none (and for others) */
	uint32_t connections;	/* this uid's connections now */
	uint64_t buffers;	/* buffers it holds (charged until their last close anywhere) */
	uint64_t bytes;
	uint32_t max_connections;	/* Limits:MaxConnectionsPerUser */
	uint32_t max_buffers;	/* Limits:MaxBuffersPerUser */
	uint64_t max_bytes;	/* Limits:MaxBytesPerUser */
	uint32_t count;		/* struct rstmem_heap_usage entries that follow */
	uint32_t entry_size;	/* sizeof(struct rstmem_heap_usage); step by this */
};

#define RSTMEM_HEAP_USAGE_GRANTED	(1u << 0)	/* the access policy lets the caller allocate here */
#define RSTMEM_NO_LIMIT			0xffffffffffffffffull

struct rstmem_heap_usage {
	char name[RSTMEM_HEAP_NAME_LEN];
	uint64_t buffers;	/* this uid's buffers from this heap */
	uint64_t bytes;
	uint64_t share_bytes;	/* the most this uid may hold here; RSTMEM_NO_LIMIT: no pool share */
	uint64_t allocations;	/* this uid's successful ALLOCs here since start */
	uint64_t failures;	/* and failed ones */
	uint32_t flags;		/* RSTMEM_HEAP_USAGE_* (GRANTED: only when asking about oneself) */
	uint32_t reserved;
};

/* ---- HEAP_IOCTL: a program's own ioctl on a heap node (librstmem-preload.so) ---- */
/*
 * Runs the program's ioctl request on the daemon's open /dev/dma_heap/<heap>,
 * with the program's argument bytes, under the caller's quotas, and returns
 * what the kernel returned: its errno, the argument as the kernel left it,
 * and the new dma-buf descriptor (SCM_RIGHTS) when the kernel made one. The
 * request payload is struct rstmem_heap_ioctl_request followed by arg_size
 * bytes; the success reply is struct rstmem_heap_ioctl_reply followed by
 * arg_size bytes. A non-zero status.error means the daemon did not run the
 * request (no such heap, policy, quota): the program's ioctl fails with it.
 * Heaps: the LIST_HEAPS entries whose generation is not RSTMEM_GENERATION_V4
 * (v4 use cases are TEE_IOC_RSTMEM_ALLOC, not heap nodes).
 */
#define RSTMEM_OP_HEAP_IOCTL		16
#define RSTMEM_HEAP_IOCTL_MAX_ARG	4096	/* largest argument carried */
#define RSTMEM_HEAP_IOCTL_NO_FD		0xffffffffu	/* fd_offset when no descriptor came */

struct rstmem_heap_ioctl_request {
	char heap[RSTMEM_HEAP_NAME_LEN];	/* the node's name under /dev/dma_heap */
	uint32_t request;	/* the ioctl request number exactly as the program passed it */
	uint32_t arg_size;	/* _IOC_SIZE(request) when _IOC_DIR(request) != _IOC_NONE, else 0 */
	uint32_t flags;		/* 0 */
	uint32_t reserved;	/* 0 */
};

struct rstmem_heap_ioctl_reply {
	int32_t error;		/* the kernel's errno for the ioctl, 0 on success */
	int32_t result;		/* the ioctl's return value when error is 0 */
	uint32_t arg_size;	/* = the request's arg_size: the argument as the kernel left it follows */
	uint32_t fd_offset;	/* where the argument holds the new descriptor's number, or RSTMEM_HEAP_IOCTL_NO_FD */
	uint32_t fd_cloexec;	/* 1 when the kernel made that descriptor close-on-exec */
	uint32_t reserved;
	uint64_t buffer_id;	/* the daemon's id of the new buffer, 0 when none */
};

#endif /* RSTMEM_PROTOCOL_H */
