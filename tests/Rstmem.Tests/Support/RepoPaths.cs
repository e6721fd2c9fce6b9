namespace Rstmem.Tests.Support;

/// <summary>Locations in the source tree, found from the test assembly upwards.</summary>
internal static class RepoPaths
{
    public static string Root { get; } = FindRoot();

    public static string AbiIncludeDir => Path.Combine(Root, "src", "Interop", "include");

    /// <summary>The C build of src/Native: building this test project makes the helpers it starts there (Rstmem.Tests.csproj).</summary>
    public static string NativeBuildDir => Path.Combine(Root, "build", "native");

    /// <summary>The built rstmemd.dll next to the tests (the project reference copies it).</summary>
    public static string RstmemdDll => Path.Combine(AppContext.BaseDirectory, "rstmemd.dll");

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "rstmemd.sln")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException($"no rstmemd.sln above {AppContext.BaseDirectory}");
    }
}
