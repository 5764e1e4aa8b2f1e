// The peer of every connected Unix socket, from the kernel's NETLINK_SOCK_DIAG (unix_diag, UDIAG_SHOW_PEER).
// /proc/net/unix lists sockets but not who they are connected to; this is the only unprivileged way to learn that
// backend socket X is connected to worker socket Y.
//
// Scope: a dump lists the sockets of ONE network namespace, the one the netlink socket was created in
// (net/unix/diag.c, unix_diag_dump(): `net = sock_net(skb->sk)`, then it walks only `net->unx.table` on kernels with
// per-namespace Unix hash tables, or skips `!net_eq(sock_net(sk), net)` on older ones). Both ends of a stream
// connection live in the CONNECTING side's namespace (net/unix/af_unix.c, unix_stream_connect(): the server-side
// socket is `unix_create1(net, ...)` with `net = sock_net(sk)` of the client), so dumping each worker's namespace
// finds the backend ends too, even when PostgreSQL runs in another namespace and shares the socket directory.
//
// Plain socket system calls, no libbpf: part of the core. Replies are untrusted bytes; the parser is separate and pure
// so that malformed messages can be tested without a kernel.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

namespace sp {

// Socket inode -> inode of its peer (sockets without a peer, or whose peer is already closed, are absent).
using UnixPeerTable = std::unordered_map<std::uint64_t, std::uint64_t>;

enum class DiagParse { kMore, kDone, kError };

// Parses one datagram of a SOCK_DIAG_BY_FAMILY/AF_UNIX dump reply to request `seq`, adding to `peers`. kMore: the
// datagram was consumed and more follow; kDone: NLMSG_DONE was seen; kError: `error` says why (an NLMSG_ERROR from
// the kernel, a truncated or inconsistent message, a foreign sequence number).
DiagParse parse_unix_diag_datagram(const void* data, std::size_t size, std::uint32_t seq, UnixPeerTable& peers,
                                   std::string& error);

// Dumps the peers of the connected Unix sockets in the calling thread's network namespace. Needs no privilege. Fails
// (false, `error`) on any netlink problem, including more than `max_sockets` sockets; `peers` then holds what was
// read so far and should not be trusted.
bool dump_unix_peers(UnixPeerTable& peers, std::string& error, std::size_t max_sockets = 1u << 21);

// The same inside the network namespace `netns_path` names (e.g. /proc/PID/ns/net): a short-lived thread setns()es
// there and creates the netlink socket, which keeps that namespace for life; the calling thread never changes
// namespace. Needs CAP_SYS_ADMIN over the target namespace (setns).
bool dump_unix_peers_in(const std::string& netns_path, UnixPeerTable& peers, std::string& error,
                        std::size_t max_sockets = 1u << 21);

}  // namespace sp
