using Microsoft.Extensions.Logging;

namespace Rstmem.Daemon.Broker;

/// <summary>
/// The broker's log lines, source-generated (<see cref="LoggerMessageAttribute"/>):
/// each checks its level before touching an argument, so a line that is not
/// written costs no formatting, boxing or array.
/// </summary>
internal static partial class BrokerLog
{
    [LoggerMessage(Level = LogLevel.Debug, Message = "buffer {BufferId} of {Size} bytes from {Heap} (uid {Uid}) released: its last descriptor was closed")]
    public static partial void BufferReleased(this ILogger logger, ulong bufferId, long size, string heap, uint uid);

    [LoggerMessage(Level = LogLevel.Information, Message = "stopping: no new connections; answering {Clients} connected client(s)")]
    public static partial void Stopping(this ILogger logger, int clients);

    [LoggerMessage(Level = LogLevel.Warning, Message = "accept: {Errno}")]
    public static partial void AcceptFailed(this ILogger logger, string errno);

    [LoggerMessage(Level = LogLevel.Warning, Message = "refusing a client whose credentials are unknown: SO_PEERCRED: {Errno}")]
    public static partial void CredentialsUnknown(this ILogger logger, string errno);

    [LoggerMessage(Level = LogLevel.Warning, Message = "refusing a client of uid {Uid} pid {Pid}: cannot watch its socket: epoll_ctl: {Errno}")]
    public static partial void CannotWatch(this ILogger logger, uint uid, int pid, string errno);

    [LoggerMessage(Level = LogLevel.Warning, Message = "uid {Uid} reached its MaxConnectionsPerUser limit ({Limit}); further refusals are not logged")]
    public static partial void ConnectionLimit(this ILogger logger, uint uid, int limit);

    [LoggerMessage(Level = LogLevel.Debug, Message = "client connected: uid {Uid} pid {Pid}")]
    public static partial void Connected(this ILogger logger, uint uid, int pid);

    [LoggerMessage(Level = LogLevel.Error, Message = "dropping client uid {Uid} pid {Pid}: handling its request failed: {Message}")]
    public static partial void RequestFailed(this ILogger logger, Exception exception, uint uid, int pid, string message);

    [LoggerMessage(Level = LogLevel.Debug, Message = "client uid {Uid} pid {Pid} dropped: {Reason}")]
    public static partial void Dropped(this ILogger logger, uint uid, int pid, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "dropping client uid {Uid} pid {Pid}: malformed request: {Reason}")]
    public static partial void Malformed(this ILogger logger, uint uid, int pid, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "uid {Uid} reached its {Limit} limit: {Refusal}; further refusals are not logged")]
    public static partial void QuotaLimit(this ILogger logger, uint uid, string limit, string refusal);

    [LoggerMessage(Level = LogLevel.Information, Message = "allocation of {Size} bytes from {Heap} for uid {Uid} pid {Pid} failed: {Errno}")]
    public static partial void AllocationFailed(this ILogger logger, long size, string heap, uint uid, int pid, string errno);

    [LoggerMessage(Level = LogLevel.Information, Message = "handed buffer {BufferId} '{BufferName}' of {Size} bytes from {Heap} to uid {Uid} pid {Pid}")]
    public static partial void Handed(this ILogger logger, ulong bufferId, string bufferName, long size, string heap, uint uid, int pid);
}
