using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Rstmem.Daemon.Client;
using Rstmem.Daemon.Policy;
using Rstmem.Daemon.Protocol;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Model;

namespace Rstmem.Daemon.Cli;

/// <summary><c>rstmemd heaps | alloc | stats | usage</c>: clients of a running daemon.</summary>
internal static class ClientCommands
{
    private static Option<string?> SocketOption() => new("--socket") { Description = $"the daemon's socket (default: ${RstmemProtocol.RSTMEM_SOCKET_ENV}, else the daemon's default path)" };

    private static Option<bool> JsonOption() => new("--json") { Description = "print JSON instead of a table" };

    public static Command Heaps(TextWriter stdout, TextWriter stderr)
    {
        Option<string?> socket = SocketOption();
        Option<bool> json = JsonOption();
        var command = new Command("heaps", "list the heaps and use cases the daemon offers") { socket, json };
        command.SetAction(result => WithClient(result.GetValue(socket), "heaps", stderr, client =>
        {
            IReadOnlyList<HeapInfo> heaps = client.ListHeaps();
            if (result.GetValue(json))
            {
                stdout.WriteLine(JsonSerializer.Serialize(new HeapsJson(client.Server, heaps), ClientJson.Default.HeapsJson));
                return RstmemdCli.ExitOk;
            }
            stdout.WriteLine($"{client.Server.Server}: {BackendName(client.Server.Backend)}, generation {GenerationName(client.Server.Generation)}, page size {client.Server.PageSize}");
            Table(stdout, ["HEAP", "USE CASE", "TOTAL", "FREE", "MAX ALLOC", "KIND"],
                heaps.Select(h => new[]
                {
                    h.Name, h.UseCase.Length > 0 ? h.UseCase : "-",
                    Known(h, h.TotalBytes), Known(h, h.FreeBytes), ByteSize.Format((long)Math.Min(h.MaxAllocBytes, long.MaxValue)),
                    (h.Flags & RstmemProtocol.RSTMEM_HEAP_RESTRICTED) != 0 ? "restricted" : "mappable",
                }));
            return RstmemdCli.ExitOk;
        }));
        return command;
    }

    public static Command Alloc(TextWriter stdout, TextWriter stderr)
    {
        Option<string?> socket = SocketOption();
        Option<bool> json = JsonOption();
        var useCase = new Option<string?>("--use-case") { Description = "secure-video, trusted-ui or secure-video-record" };
        var heap = new Option<string?>("--heap") { Description = "a heap name (system, reserved, protected,secure-video, ...)" };
        var size = new Option<string>("--size") { Description = "bytes: 4096, 4K, 1M, 16MiB", Required = true };
        var name = new Option<string?>("--name") { Description = "buffer name (at most 31 characters)" };
        var hold = new Option<double>("--hold") { Description = "keep the buffer this many seconds before closing it" };
        var command = new Command("alloc", "allocate one buffer and show what the received descriptor reports") { useCase, heap, size, name, hold, socket, json };
        command.SetAction(result =>
        {
            string? u = result.GetValue(useCase);
            string? h = result.GetValue(heap);
            if ((u is null) == (h is null))
            {
                return RstmemdCli.UsageError(stderr, "alloc: give exactly one of --use-case and --heap");
            }
            string sizeText = result.GetValue(size)!;
            if (!ByteSize.TryParse(sizeText, out long bytes) || bytes <= 0)
            {
                return RstmemdCli.UsageError(stderr, $"alloc: --size: '{sizeText}' is not a size; expected {ByteSize.Expected}");
            }
            string? bufferName = result.GetValue(name);
            if (bufferName is not null && System.Text.Encoding.UTF8.GetByteCount(bufferName) > RstmemProtocol.RSTMEM_BUFFER_NAME_LEN - 1)
            {
                return RstmemdCli.UsageError(stderr, $"alloc: --name: '{bufferName}' is longer than {RstmemProtocol.RSTMEM_BUFFER_NAME_LEN - 1} bytes");
            }
            double seconds = result.GetValue(hold);
            if (seconds < 0)
            {
                return RstmemdCli.UsageError(stderr, $"alloc: --hold: '{seconds}' is negative; expected seconds >= 0");
            }
            return WithClient(result.GetValue(socket), "alloc", stderr, client =>
            {
                using AllocatedBuffer buffer = client.Allocate(u ?? h!, bytes, u is not null ? AllocTarget.UseCase : AllocTarget.Heap, bufferName);
                LinuxKernel.Instance.LSeek(buffer.Fd, 0, Interop.Uapi.Fcntl.SEEK_END, out long lseekSize).ThrowIfError("lseek");
                LinuxKernel.Instance.ReadFdInfoFields(buffer.Fd, out IReadOnlyDictionary<string, string> fdinfo).ThrowIfError("fdinfo");
                if (result.GetValue(json))
                {
                    stdout.WriteLine(JsonSerializer.Serialize(new AllocJson(buffer.Id, buffer.Size, buffer.Heap, buffer.Fd.DangerousFd, lseekSize, fdinfo), ClientJson.Default.AllocJson));
                }
                else
                {
                    stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"buffer {buffer.Id}: {buffer.Size} bytes from {buffer.Heap}, fd {buffer.Fd.DangerousFd}"));
                    stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  lseek(fd, 0, SEEK_END) = {lseekSize}"));
                    foreach (var (key, value) in fdinfo)
                    {
                        stdout.WriteLine($"  fdinfo {key}: {value}");
                    }
                }
                stdout.Flush();
                if (seconds > 0)
                {
                    Thread.Sleep(TimeSpan.FromSeconds(seconds));
                }
                return RstmemdCli.ExitOk;
            });
        });
        return command;
    }

    public static Command Stats(TextWriter stdout, TextWriter stderr)
    {
        Option<string?> socket = SocketOption();
        Option<bool> json = JsonOption();
        var command = new Command("stats", "show the daemon's counters") { socket, json };
        command.SetAction(result => WithClient(result.GetValue(socket), "stats", stderr, client =>
        {
            DaemonStats stats = client.Stats();
            if (result.GetValue(json))
            {
                stdout.WriteLine(JsonSerializer.Serialize(stats, ClientJson.Default.DaemonStats));
                return RstmemdCli.ExitOk;
            }
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"up {TimeSpan.FromMilliseconds(stats.UptimeMs):c}, {stats.Clients} client(s), {stats.Allocations} allocations, {stats.Failures} failed, {stats.LiveBuffers} buffers ({ByteSize.Format((long)stats.LiveBytes)}) live, "
                + $"{stats.Releases} released (last close to uncharge: p99 <= {stats.ReleaseLatencyP99Us} us, max <= {stats.ReleaseLatencyMaxUs} us)"));
            Table(stdout, ["HEAP", "ALLOCS", "FAILED", "LIVE", "LIVE BYTES", "POOL FREE", "LARGEST FREE", "LENDS", "RECLAIMS"],
                stats.Heaps.Select(h => new[]
                {
                    h.Name, N(h.Allocations), N(h.Failures), N(h.LiveBuffers), ByteSize.Format((long)h.LiveBytes),
                    h.TotalBytes == 0 ? "-" : ByteSize.Format((long)h.FreeBytes), h.TotalBytes == 0 ? "-" : ByteSize.Format((long)h.LargestFreeBytes),
                    N(h.Lends), N(h.Reclaims),
                }));
            return RstmemdCli.ExitOk;
        }));
        return command;
    }

    public static Command Usage(TextWriter stdout, TextWriter stderr)
    {
        Option<string?> socket = SocketOption();
        Option<bool> json = JsonOption();
        var uid = new Option<string?>("--uid") { Description = "another user's usage (root or Access:AdminGroups only): a uid or a user name" };
        var all = new Option<bool>("--all") { Description = "every user holding buffers or connected, and you (root or Access:AdminGroups only)" };
        var command = new Command("usage", "show your usage of the daemon and your limits: connections, buffers, bytes, pool shares") { uid, all, socket, json };
        command.SetAction(result =>
        {
            string? uidText = result.GetValue(uid);
            uint? who = null;
            if (uidText is not null)
            {
                if (result.GetValue(all))
                {
                    return RstmemdCli.UsageError(stderr, "usage: give --uid or --all, not both");
                }
                if (!TryResolveUid(uidText, out uint resolved))
                {
                    return RstmemdCli.UsageError(stderr, $"usage: --uid: '{uidText}' is neither a uid (0-{uint.MaxValue - 1}) nor a known user name");
                }
                who = resolved;
            }
            return WithClient(result.GetValue(socket), "usage", stderr, client =>
            {
                UserUsageInfo own = client.Usage();
                var users = new List<UserUsageInfo> { who is uint other ? client.Usage(other) : own };
                if (result.GetValue(all))
                {
                    if (!own.Admin)
                    {
                        throw new RstmemException(Errno.EACCES, $"--all needs root or a member of Access:AdminGroups; uid {own.Uid} is neither");
                    }
                    // From uid 0, follow next_uid: the daemon names each uid it has records of once, in order.
                    users.Clear();
                    for (UserUsageInfo? next = client.Usage(0); next is not null; next = next.NextUid is uint n ? client.Usage(n) : null)
                    {
                        if (next.NextUid is uint following && following <= next.Uid)
                        {
                            throw new ProtocolException($"USAGE of uid {next.Uid} names next_uid {following}; expected a higher uid");
                        }
                        if (next.Uid == own.Uid || next.Buffers > 0 || next.Connections > 0)
                        {
                            users.Add(next);
                        }
                    }
                    if (!users.Any(u => u.Uid == own.Uid))
                    {
                        users.Add(own);
                    }
                }
                if (result.GetValue(json))
                {
                    stdout.WriteLine(result.GetValue(all)
                        ? JsonSerializer.Serialize(users, ClientJson.Default.ListUserUsageInfo)
                        : JsonSerializer.Serialize(users[0], ClientJson.Default.UserUsageInfo));
                    return RstmemdCli.ExitOk;
                }
                foreach (UserUsageInfo user in users)
                {
                    stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"uid {user.Uid}: {user.Connections} of {user.MaxConnections} connection(s), {user.Buffers} of {user.MaxBuffers} buffer(s), {ByteSize.Format((long)Math.Min(user.Bytes, long.MaxValue))} of {ByteSize.Format((long)Math.Min(user.MaxBytes, long.MaxValue))}"));
                    Table(stdout, ["HEAP", "BUFFERS", "BYTES", "SHARE", "ALLOCS", "FAILED", "GRANTED"],
                        user.Heaps.Select(h => new[]
                        {
                            h.Name, N(h.Buffers), ByteSize.Format((long)Math.Min(h.Bytes, long.MaxValue)),
                            h.ShareBytes is ulong share ? ByteSize.Format((long)Math.Min(share, long.MaxValue)) : "-",
                            N(h.Allocations), N(h.Failures),
                            user.Uid == own.Uid ? (h.Granted ? "yes" : "no") : "-", // the daemon says only for the caller
                        }));
                }
                return RstmemdCli.ExitOk;
            });
        });
        return command;
    }

    /// <summary>A uid in decimal, or a user name from /etc/passwd, as the access policy reads them.</summary>
    private static bool TryResolveUid(string text, out uint uid)
    {
        uid = AccessOptions.ParseId(text, name => PasswdDatabase.TryGetUid(name)) ?? uint.MaxValue;
        return uid != uint.MaxValue; // (uid_t)-1 is no user
    }

    private static int WithClient(string? socket, string command, TextWriter stderr, Func<RstmemClient, int> action)
    {
        try
        {
            using RstmemClient client = RstmemClient.Connect(socket);
            return action(client);
        }
        catch (Exception e) when (e is RstmemException or ErrnoException or ProtocolException)
        {
            stderr.WriteLine($"rstmemd {command}: {e.Message}");
            return RstmemdCli.ExitFailure;
        }
    }

    private static string N(ulong value) => value.ToString(CultureInfo.InvariantCulture);

    private static string Known(HeapInfo heap, ulong bytes) =>
        (heap.Flags & RstmemProtocol.RSTMEM_HEAP_SIZES_KNOWN) != 0 ? ByteSize.Format((long)bytes) : "-";

    public static string BackendName(uint backend) => backend switch
    {
        RstmemProtocol.RSTMEM_BACKEND_MODEL => "reference model",
        RstmemProtocol.RSTMEM_BACKEND_TEE => "TEE (v4)",
        RstmemProtocol.RSTMEM_BACKEND_DMA_HEAP => "DMA heaps",
        _ => $"backend {backend}",
    };

    public static string GenerationName(uint generation) => generation switch
    {
        RstmemProtocol.RSTMEM_GENERATION_V4 => "v4",
        RstmemProtocol.RSTMEM_GENERATION_V6 => "v6",
        RstmemProtocol.RSTMEM_GENERATION_MAINLINE => "mainline",
        _ => "none",
    };

    private static void Table(TextWriter stdout, string[] headers, IEnumerable<string[]> rows)
    {
        var all = new List<string[]> { headers };
        all.AddRange(rows);
        int[] widths = headers.Select((_, i) => all.Max(r => r[i].Length)).ToArray();
        foreach (string[] row in all)
        {
            stdout.WriteLine(string.Join("  ", row.Select((cell, i) => i == row.Length - 1 ? cell : cell.PadRight(widths[i]))).TrimEnd());
        }
    }
}

/// <summary><c>rstmemd heaps --json</c>: the server's hello and its heaps.</summary>
internal sealed record HeapsJson(
    [property: JsonPropertyName("server")] ServerInfo Server,
    [property: JsonPropertyName("heaps")] IReadOnlyList<HeapInfo> Heaps);

/// <summary><c>rstmemd alloc --json</c>: the buffer, and what its descriptor reports.</summary>
internal sealed record AllocJson(
    [property: JsonPropertyName("id")] ulong Id,
    [property: JsonPropertyName("size")] long Size,
    [property: JsonPropertyName("heap")] string Heap,
    [property: JsonPropertyName("fd")] int Fd,
    [property: JsonPropertyName("lseek_size")] long LseekSize,
    [property: JsonPropertyName("fdinfo")] IReadOnlyDictionary<string, string> FdInfo);

/// <summary>
/// The client commands' JSON, generated at compile time (no reflection, so
/// NativeAOT prints the same as the JIT): compact, the client records'
/// property names as declared.
/// </summary>
[JsonSerializable(typeof(HeapsJson))]
[JsonSerializable(typeof(AllocJson))]
[JsonSerializable(typeof(DaemonStats))]
[JsonSerializable(typeof(UserUsageInfo))]
[JsonSerializable(typeof(List<UserUsageInfo>))]
internal sealed partial class ClientJson : JsonSerializerContext;
