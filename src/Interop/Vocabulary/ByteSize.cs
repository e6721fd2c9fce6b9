using System.Globalization;

namespace Rstmem.Interop;

/// <summary>Sizes as people write them: 4096, 4K, 1M, 16MiB, 2G (powers of 1024).</summary>
public static class ByteSize
{
    public const string Expected = "a byte count such as 4096, 64K, 16M or 16MiB";

    public static bool TryParse(string? text, out long bytes)
    {
        bytes = 0;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }
        string s = text.Trim();
        int digits = 0;
        while (digits < s.Length && char.IsAsciiDigit(s[digits]))
        {
            digits++;
        }
        if (digits == 0 || !long.TryParse(s.AsSpan(0, digits), NumberStyles.None, CultureInfo.InvariantCulture, out long number))
        {
            return false;
        }
        int shift = s[digits..].Trim().ToUpperInvariant() switch
        {
            "" or "B" => 0,
            "K" or "KB" or "KIB" => 10,
            "M" or "MB" or "MIB" => 20,
            "G" or "GB" or "GIB" => 30,
            "T" or "TB" or "TIB" => 40,
            _ => -1,
        };
        if (shift < 0 || number > long.MaxValue >> shift)
        {
            return false;
        }
        bytes = number << shift;
        return true;
    }

    public static long Parse(string text, string what) =>
        TryParse(text, out long bytes) ? bytes : throw new FormatException($"{what}: '{text}' is not a size; expected {Expected}");

    /// <summary>The shortest exact spelling: 1048576 → "1MiB", 5000 → "5000".</summary>
    public static string Format(long bytes)
    {
        string[] units = ["", "KiB", "MiB", "GiB", "TiB"];
        int unit = 0;
        while (unit < units.Length - 1 && bytes != 0 && bytes % 1024 == 0)
        {
            bytes /= 1024;
            unit++;
        }
        return bytes.ToString(CultureInfo.InvariantCulture) + units[unit];
    }
}
