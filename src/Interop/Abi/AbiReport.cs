using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Rstmem.Interop.Abi;

/// <summary>Renders an <see cref="AbiDescription"/> for <c>rstmemd abi</c>: JSON or an aligned table.</summary>
public static class AbiReport
{
    /// <summary>
    /// <c>{"arch": ..., "ioctls": {NAME: value}, "structs": {name: {"size": n, "offsets": {field: n}}}}</c>,
    /// names exactly as in the uapi headers.
    /// </summary>
    public static string ToJson(AbiDescription abi)
    {
        ArgumentNullException.ThrowIfNull(abi);
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("arch", abi.Arch);
            json.WriteStartObject("ioctls");
            foreach (var (name, value) in abi.Ioctls.OrderBy(i => i.Key, StringComparer.Ordinal))
            {
                json.WriteNumber(name, value);
            }
            json.WriteEndObject();
            json.WriteStartObject("structs");
            foreach (var (name, layout) in abi.Structs.OrderBy(s => s.Key, StringComparer.Ordinal))
            {
                json.WriteStartObject(name);
                json.WriteNumber("size", layout.Size);
                json.WriteStartObject("offsets");
                foreach (var (field, offset) in layout.Offsets)
                {
                    json.WriteNumber(field, offset);
                }
                json.WriteEndObject();
                json.WriteEndObject();
            }
            json.WriteEndObject();
            json.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray()) + "\n";
    }

    /// <summary>The same facts as aligned columns, for reading next to a BSP's headers.</summary>
    public static string ToTable(AbiDescription abi)
    {
        ArgumentNullException.ThrowIfNull(abi);
        var text = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        text.Append(inv, $"rstmemd kernel ABI on {abi.Arch}\n\n");

        int ioctlWidth = abi.Ioctls.Keys.Max(k => k.Length);
        text.Append(inv, $"{"ioctl".PadRight(ioctlWidth)}  {"value",-10}  {"dir",-3}  {"type",-4}  {"nr",3}  {"size",4}\n");
        foreach (var (name, value) in abi.Ioctls.OrderBy(i => i.Key, StringComparer.Ordinal))
        {
            string dir = Uapi.Ioc._IOC_DIR(value) switch { 1 => "W", 2 => "R", 3 => "RW", _ => "-" };
            text.Append(inv, $"{name.PadRight(ioctlWidth)}  0x{value:X8}  {dir,-3}  0x{Uapi.Ioc._IOC_TYPE(value):x2}  {Uapi.Ioc._IOC_NR(value),3}  {Uapi.Ioc._IOC_SIZE(value),4}\n");
        }

        int structWidth = abi.Structs.Keys.Max(k => k.Length);
        text.Append(inv, $"\n{"struct".PadRight(structWidth)}  {"size",4}  fields (name@offset)\n");
        foreach (var (name, layout) in abi.Structs.OrderBy(s => s.Key, StringComparer.Ordinal))
        {
            string fields = string.Join(' ', layout.Offsets.Select(o => $"{o.Key}@{o.Value}"));
            text.Append(inv, $"{name.PadRight(structWidth)}  {layout.Size,4}  {fields}\n");
        }
        return text.ToString();
    }
}
