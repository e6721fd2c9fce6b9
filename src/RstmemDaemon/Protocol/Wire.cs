using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Rstmem.Interop;
using static Rstmem.Daemon.Protocol.RstmemProtocol;

namespace Rstmem.Daemon.Protocol;

/// <summary>A packet that does not follow protocol.h: the peer gets EBADMSG and is dropped.</summary>
public sealed class ProtocolException : Exception
{
    public ProtocolException(string message) : base(message) { }

    public ProtocolException() { }

    public ProtocolException(string message, Exception innerException) : base(message, innerException) { }
}

/// <summary>Building and reading packets: header, status, structs and fixed-size strings.</summary>
public static class Wire
{
    public static int HeaderSize => Unsafe.SizeOf<rstmem_header>();

    public static int StatusSize => Unsafe.SizeOf<rstmem_status>();

    /// <summary>Reads and checks the header of a whole packet (magic, length); the payload follows it.</summary>
    public static rstmem_header ReadHeader(ReadOnlySpan<byte> packet)
    {
        if (packet.Length < HeaderSize)
        {
            throw new ProtocolException($"packet of {packet.Length} bytes is shorter than the {HeaderSize}-byte header");
        }
        var header = MemoryMarshal.Read<rstmem_header>(packet);
        if (header.magic != RSTMEM_PROTOCOL_MAGIC)
        {
            throw new ProtocolException($"bad magic 0x{header.magic:x8}; expected 0x{RSTMEM_PROTOCOL_MAGIC:x8}");
        }
        if (header.payload_length != packet.Length - HeaderSize)
        {
            throw new ProtocolException($"payload_length {header.payload_length} does not match the {packet.Length - HeaderSize} bytes that came");
        }
        return header;
    }

    /// <summary>A request's fixed struct; a payload of another size is malformed.</summary>
    public static T ReadStruct<T>(ReadOnlySpan<byte> payload, string what) where T : unmanaged
    {
        if (payload.Length != Unsafe.SizeOf<T>())
        {
            throw new ProtocolException($"{what} payload is {payload.Length} bytes; expected {Unsafe.SizeOf<T>()}");
        }
        return MemoryMarshal.Read<T>(payload);
    }

    /// <summary>Writes a packet into <paramref name="buffer"/>: header, then the parts in order. Returns its length.</summary>
    public static int Build(Span<byte> buffer, ushort opcode, uint requestId, ushort version, params ReadOnlySpan<byte[]> parts)
    {
        int length = HeaderSize;
        foreach (byte[] part in parts)
        {
            part.CopyTo(buffer[length..]);
            length += part.Length;
        }
        var header = new rstmem_header
        {
            magic = RSTMEM_PROTOCOL_MAGIC,
            version = version,
            opcode = opcode,
            request_id = requestId,
            payload_length = (uint)(length - HeaderSize),
        };
        MemoryMarshal.Write(buffer, in header);
        return length;
    }

    public static byte[] Bytes<T>(in T value) where T : unmanaged
    {
        byte[] bytes = new byte[Unsafe.SizeOf<T>()];
        MemoryMarshal.Write(bytes, in value);
        return bytes;
    }

    public static byte[] Status(Errno error, string message)
    {
        byte[] text = Encoding.UTF8.GetBytes(message);
        if (text.Length > RSTMEM_MAX_MESSAGE)
        {
            text = text[..RSTMEM_MAX_MESSAGE];
        }
        var status = new rstmem_status { error = (int)error, message_length = (uint)text.Length };
        return [.. Bytes(status), .. text];
    }

    public static byte[] Ok => Bytes(new rstmem_status());

    /// <summary>A fixed-size string field: UTF-8 up to the first NUL. A field without a NUL is malformed.</summary>
    public static string ReadString(ReadOnlySpan<byte> field, string what)
    {
        int nul = field.IndexOf((byte)0);
        if (nul < 0)
        {
            throw new ProtocolException($"{what} has no terminating NUL in its {field.Length} bytes");
        }
        return Encoding.UTF8.GetString(field[..nul]);
    }

    /// <summary>The UTF-8 bytes of a fixed-size string field before its NUL (no string made). A field without a NUL is malformed.</summary>
    public static ReadOnlySpan<byte> StringBytes(ReadOnlySpan<byte> field, string what)
    {
        int nul = field.IndexOf((byte)0);
        if (nul < 0)
        {
            throw new ProtocolException($"{what} has no terminating NUL in its {field.Length} bytes");
        }
        return field[..nul];
    }

    /// <summary>Fills a fixed-size string field; the text must leave room for the NUL.</summary>
    public static void WriteString(Span<byte> field, string value, string what)
    {
        ArgumentNullException.ThrowIfNull(value);
        field.Clear();
        int length = Encoding.UTF8.GetByteCount(value);
        if (length >= field.Length)
        {
            throw new ArgumentException($"{what} '{value}' is {length} bytes; at most {field.Length - 1} fit", nameof(value));
        }
        Encoding.UTF8.GetBytes(value, field);
    }

    public static unsafe Span<byte> Field(byte* start, int length) => new(start, length);
}
