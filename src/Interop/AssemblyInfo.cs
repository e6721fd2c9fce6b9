using System.Runtime.CompilerServices;

// Every P/Invoke in this assembly is source-generated (LibraryImport) over
// blittable types; the runtime marshaller is never involved.
[assembly: DisableRuntimeMarshalling]
