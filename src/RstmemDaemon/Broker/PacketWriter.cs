using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Rstmem.Daemon.Protocol;
using Rstmem.Interop;
using static Rstmem.Daemon.Protocol.RstmemProtocol;

namespace Rstmem.Daemon.Broker;

/// <summary>
/// Writes one packet in place: the header's room first, then the status and
/// structs appended straight into <paramref name="buffer"/> (no array per
/// part), then the header once the length is known.
/// </summary>
internal ref struct PacketWriter(Span<byte> buffer)
{
    private readonly Span<byte> buffer = buffer;
    private int length = Wire.HeaderSize;

    public readonly int Length => length;

    /// <summary>Appends a struct's bytes.</summary>
    public void Append<T>(in T value) where T : unmanaged
    {
        MemoryMarshal.Write(buffer[length..], in value);
        length += Unsafe.SizeOf<T>();
    }

    /// <summary>Appends the first <paramref name="bytes"/> bytes of a struct: its layout in an older protocol version that ended there.</summary>
    public void AppendPrefix<T>(in T value, int bytes) where T : unmanaged
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(bytes, Unsafe.SizeOf<T>());
        MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in value))[..bytes].CopyTo(buffer[length..]);
        length += bytes;
    }

    /// <summary>
    /// Appends a status: the error and its message in UTF-8, cut at a
    /// character boundary to at most RSTMEM_MAX_MESSAGE bytes.
    /// </summary>
    public void AppendStatus(Errno error, ReadOnlySpan<char> message)
    {
        Span<byte> text = buffer.Slice(length + Wire.StatusSize, Math.Min(RSTMEM_MAX_MESSAGE, buffer.Length - length - Wire.StatusSize));
        System.Text.Unicode.Utf8.FromUtf16(message, text, out _, out int written);
        Append(new rstmem_status { error = (int)error, message_length = (uint)written });
        length += written;
    }

    /// <summary>Writes the header; returns the packet's length.</summary>
    public readonly int Finish(ushort opcode, uint requestId, ushort version)
    {
        var header = new rstmem_header
        {
            magic = RSTMEM_PROTOCOL_MAGIC,
            version = version,
            opcode = opcode,
            request_id = requestId,
            payload_length = (uint)(length - Wire.HeaderSize),
        };
        MemoryMarshal.Write(buffer, in header);
        return length;
    }
}
