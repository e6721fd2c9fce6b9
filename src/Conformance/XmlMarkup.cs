using System.Text;

namespace Rstmem.Conformance;

/// <summary>
/// Indented XML 1.0 text, for the JUnit report: elements, attributes and
/// character data, escaped. A character XML 1.0 cannot carry (control
/// characters other than tab, newline and carriage return; U+FFFE, U+FFFF;
/// a lone surrogate) becomes U+FFFD, so any detail text a case produces
/// still makes a well-formed document.
/// </summary>
internal sealed class XmlMarkup
{
    private readonly StringBuilder text = new("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");

    public void Open(string name, int depth, params ReadOnlySpan<(string Name, string Value)> attributes)
    {
        Start(name, depth, attributes);
        text.Append(">\n");
    }

    public void Empty(string name, int depth, params ReadOnlySpan<(string Name, string Value)> attributes)
    {
        Start(name, depth, attributes);
        text.Append(" />\n");
    }

    /// <summary>An element holding character data.</summary>
    public void Element(string name, int depth, string content, params ReadOnlySpan<(string Name, string Value)> attributes)
    {
        Start(name, depth, attributes);
        text.Append('>');
        Escape(content, attribute: false);
        text.Append("</").Append(name).Append(">\n");
    }

    public void Close(string name, int depth) => text.Append(' ', 2 * depth).Append("</").Append(name).Append(">\n");

    public override string ToString() => text.ToString();

    private void Start(string name, int depth, ReadOnlySpan<(string Name, string Value)> attributes)
    {
        text.Append(' ', 2 * depth).Append('<').Append(name);
        foreach ((string attribute, string value) in attributes)
        {
            text.Append(' ').Append(attribute).Append("=\"");
            Escape(value, attribute: true);
            text.Append('"');
        }
    }

    private void Escape(string value, bool attribute)
    {
        for (int i = 0; i < value.Length; i++)
        {
            char c = value[i];
            switch (c)
            {
                case '&': text.Append("&amp;"); break;
                case '<': text.Append("&lt;"); break;
                case '>': text.Append("&gt;"); break;
                case '"' when attribute: text.Append("&quot;"); break;
                // In an attribute, a literal newline or tab would be normalised to a space by the reader.
                case '\n' when attribute: text.Append("&#10;"); break;
                case '\t' when attribute: text.Append("&#9;"); break;
                case '\r': text.Append("&#13;"); break;
                case '\n' or '\t': text.Append(c); break;
                case < ' ' or '\uFFFE' or '\uFFFF': text.Append('\uFFFD'); break;
                default:
                    if (char.IsHighSurrogate(c) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1]))
                    {
                        text.Append(c).Append(value[++i]);
                    }
                    else
                    {
                        text.Append(char.IsSurrogate(c) ? '\uFFFD' : c);
                    }
                    break;
            }
        }
    }
}
