using System.Diagnostics;
using System.Reflection;
using System.Text;
using System.Xml.Linq;
using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Loading;
using LocalMxfp4.Engine.Sampling;
using LocalMxfp4.TestSupport;

namespace LocalMxfp4.Cuda.Tests;

/// <summary>
/// The LocalMxfp4.Cuda NuGet package as a user gets it: packed from this build (<c>dotnet pack --no-build</c>, with the
/// packages it depends on), restored from a local feed into a fresh library and a console app that references it, built
/// and published. The kernels must land next to the app where <see cref="CudaKernels"/> finds them, and the packaged engine must run (CPU, greedy) to the
/// same tokens as the engine this test references directly. No GPU needed; needs the fatbin (nvcc) and the NuGet sources
/// the solution restores from (third-party packages come from the local package cache when they are there).
/// </summary>
public sealed class PackageTests
{
    private const string ConsumerProgram = """
        using LocalMxfp4.Cuda;
        using LocalMxfp4.Engine.Contract;
        using LocalMxfp4.Engine.Loading;
        using LocalMxfp4.Engine.Sampling;

        string? fatbin = CudaKernels.SearchDirectories().Select(d => Path.Combine(d, CudaKernels.FatbinName)).FirstOrDefault(File.Exists);
        Console.WriteLine($"fatbin={fatbin ?? "none"}");
        Console.WriteLine($"cuda={CudaBackend.Probe() ?? "available"}");
        using IInferenceEngine engine = EngineLoader.Load(args[0], new EngineLoadOptions { Backend = EngineBackend.Cpu, Threads = 1 });
        using IInferenceSession session = engine.CreateSession(64);
        var logits = new float[engine.Config.VocabularySize];
        var tokens = new List<int>();
        int next = 1;
        for (int i = 0; i < 12; i++)
        {
            session.Forward([next], logits);
            next = Sampler.ArgMax(logits);
            tokens.Add(next);
        }

        Console.WriteLine("tokens=" + string.Join(',', tokens));
        """;

    private static string Configuration =>
        typeof(PackageTests).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Release";

    /// <summary>Pack → restore in a new app → build and publish: the fatbin is in both outputs and the packaged engine runs.</summary>
    [Fact]
    public void PackagedBackendShipsItsKernelsToTheConsumer()
    {
        string repo = SharedData.RepositoryRoot;
        string cudaProject = Path.Combine(repo, "src", "LocalMxfp4.Cuda", "LocalMxfp4.Cuda.csproj");
        string fatbin = Path.Combine(repo, "src", "LocalMxfp4.Cuda", "obj", "native", CudaKernels.FatbinName);
        if (!File.Exists(fatbin))
        {
            Assert.Skip($"No kernels were built ({fatbin} is missing: nvcc or cmake not installed), so there is nothing to package.");
        }

        RequireSdk();

        string root = Directory.CreateTempSubdirectory("lmx-package-test").FullName;
        try
        {
            string feed = Directory.CreateDirectory(Path.Combine(root, "feed")).FullName;
            string app = Directory.CreateDirectory(Path.Combine(root, "app")).FullName;
            string version = "0.0.0-test.t" + Guid.NewGuid().ToString("N")[..12];
            foreach (string project in ProjectClosure(cudaProject))
            {
                Dotnet(repo, "pack", project, "-c", Configuration, "--no-build", "-o", feed, $"-p:PackageVersion={version}",
                    $"-p:NuspecOutputPath={Path.Combine(root, "nuspec")}/");
            }

            string package = Path.Combine(feed, $"LocalMxfp4.Cuda.{version}.nupkg");
            using (System.IO.Compression.ZipArchive zip = System.IO.Compression.ZipFile.OpenRead(package))
            {
                Assert.Contains(zip.Entries, e => e.FullName == "kernels/" + CudaKernels.FatbinName);
                Assert.Contains(zip.Entries, e => e.FullName == "buildTransitive/LocalMxfp4.Cuda.targets");
            }

            // Our packages are extracted into root/packages; everything else resolves from the user's package cache as a
            // fallback folder, so the test neither downloads what the solution already restored nor leaves test versions
            // in the user's cache.
            File.WriteAllText(Path.Combine(app, "nuget.config"), $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <config><add key="globalPackagesFolder" value="{Path.Combine(root, "packages")}" /></config>
                  <packageSources><add key="lmx-test-feed" value="{feed}" /></packageSources>
                  <fallbackPackageFolders><add key="user-cache" value="{GlobalPackagesFolder(repo)}" /></fallbackPackageFolders>
                </configuration>
                """);
            // The package is referenced by a library and reaches the app through it: the library's own output is the direct
            // consumer, the app's the transitive one that buildTransitive/ exists for.
            string library = Directory.CreateDirectory(Path.Combine(root, "lib")).FullName;
            File.Copy(Path.Combine(app, "nuget.config"), Path.Combine(library, "nuget.config"));
            File.WriteAllText(Path.Combine(library, "lib.csproj"), $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <TargetFramework>net10.0</TargetFramework>
                  </PropertyGroup>
                  <ItemGroup>
                    <PackageReference Include="LocalMxfp4.Cuda" Version="{version}" />
                  </ItemGroup>
                </Project>
                """);
            File.WriteAllText(Path.Combine(app, "app.csproj"), """
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <ImplicitUsings>enable</ImplicitUsings>
                    <Nullable>enable</Nullable>
                  </PropertyGroup>
                  <ItemGroup>
                    <ProjectReference Include="../lib/lib.csproj" />
                  </ItemGroup>
                </Project>
                """);
            File.WriteAllText(Path.Combine(app, "Program.cs"), ConsumerProgram);
            Dotnet(app, "build", "-c", "Release");
            string publish = Path.Combine(root, "publish");
            Dotnet(app, "publish", "-c", "Release", "-o", publish);

            byte[] built = File.ReadAllBytes(fatbin);
            Assert.Equal(built, File.ReadAllBytes(Path.Combine(library, "bin", "Release", "net10.0", CudaKernels.FatbinName)));
            Assert.Equal(built, File.ReadAllBytes(Path.Combine(app, "bin", "Release", "net10.0", CudaKernels.FatbinName)));
            Assert.Equal(built, File.ReadAllBytes(Path.Combine(publish, CudaKernels.FatbinName)));

            string model = Path.Combine(repo, "models", "stories260K");
            string run = Dotnet(publish, Path.Combine(publish, "app.dll"), model);
            Assert.Contains($"fatbin={Path.Combine(publish, CudaKernels.FatbinName)}", run, StringComparison.Ordinal);
            Assert.Contains("tokens=" + ReferenceTokens(model), run, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>Packing without built kernels fails with LMX0001 instead of producing a CUDA package that cannot run.</summary>
    [Fact]
    public void PackingWithoutKernelsIsAnError()
    {
        string repo = SharedData.RepositoryRoot;
        string cudaProject = Path.Combine(repo, "src", "LocalMxfp4.Cuda", "LocalMxfp4.Cuda.csproj");
        if (!File.Exists(Path.Combine(Path.GetDirectoryName(cudaProject)!, "bin", Configuration, "net10.0", "LocalMxfp4.Cuda.dll")))
        {
            Assert.Skip("LocalMxfp4.Cuda is not built in this configuration.");
        }

        RequireSdk();

        string root = Directory.CreateTempSubdirectory("lmx-package-test").FullName;
        try
        {
            string empty = Directory.CreateDirectory(Path.Combine(root, "no-kernels")).FullName;
            (int exit, string output) = TryDotnet(repo, "pack", cudaProject, "-c", Configuration, "--no-build", "-o", Path.Combine(root, "feed"),
                $"-p:LocalMxfp4NativeBuildDir={empty}/", $"-p:NuspecOutputPath={Path.Combine(root, "nuspec")}/");
            Assert.NotEqual(0, exit);
            Assert.Contains("LMX0001", output, StringComparison.Ordinal);
            Assert.False(Directory.Exists(Path.Combine(root, "feed")) && Directory.EnumerateFiles(Path.Combine(root, "feed"), "*.nupkg").Any(), "a package was written");
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>The greedy tokens the consumer program must print, from the engine this assembly references.</summary>
    private static string ReferenceTokens(string model)
    {
        using IInferenceEngine engine = EngineLoader.Load(model, new EngineLoadOptions { Backend = EngineBackend.Cpu, Threads = 1 });
        using IInferenceSession session = engine.CreateSession(64);
        var logits = new float[engine.Config.VocabularySize];
        var tokens = new List<int>();
        int next = 1;
        for (int i = 0; i < 12; i++)
        {
            session.Forward([next], logits);
            next = Sampler.ArgMax(logits);
            tokens.Add(next);
        }

        return string.Join(',', tokens);
    }

    /// <summary>The project and every project it references, transitively (the packages a consumer needs from the feed).</summary>
    private static IEnumerable<string> ProjectClosure(string project)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var pending = new Stack<string>([Path.GetFullPath(project)]);
        while (pending.TryPop(out string? current))
        {
            if (!seen.Add(current))
            {
                continue;
            }

            foreach (XElement reference in XDocument.Load(current).Descendants("ProjectReference"))
            {
                pending.Push(Path.GetFullPath(Path.Combine(Path.GetDirectoryName(current)!, (string)reference.Attribute("Include")!)));
            }
        }

        return seen;
    }

    /// <summary>Skips where only the .NET runtime is installed (the GPU machine runs the test assembly without an SDK).</summary>
    private static void RequireSdk()
    {
        (int exit, string output) sdks;
        try
        {
            sdks = TryDotnet(SharedData.RepositoryRoot, "--list-sdks");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            Assert.Skip("dotnet is not on PATH: " + e.Message);
            return;
        }

        if (sdks.exit != 0 || string.IsNullOrWhiteSpace(sdks.output))
        {
            Assert.Skip("No .NET SDK is installed, so nothing can be packed or restored here.");
        }
    }

    private static string GlobalPackagesFolder(string repo)
    {
        string? fromEnv = Environment.GetEnvironmentVariable("NUGET_PACKAGES");
        if (!string.IsNullOrEmpty(fromEnv))
        {
            return fromEnv;
        }

        string listed = Dotnet(repo, "nuget", "locals", "global-packages", "--list");
        const string prefix = "global-packages:";
        string line = listed.Split('\n').Select(l => l.Trim()).First(l => l.StartsWith(prefix, StringComparison.Ordinal));
        return line[prefix.Length..].Trim();
    }

    private static string Dotnet(string workingDirectory, params string[] arguments)
    {
        (int exit, string output) = TryDotnet(workingDirectory, arguments);
        Assert.True(exit == 0, $"dotnet {string.Join(' ', arguments)} exited with {exit}:\n{output}");
        return output;
    }

    private static (int Exit, string Output) TryDotnet(string workingDirectory, params string[] arguments)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        // No MSBuild nodes or compiler servers outlive the test; no kernel-directory override reaches the consumer.
        if (arguments[0] is "pack" or "build" or "publish")
        {
            start.ArgumentList.Add("-nodeReuse:false");
            start.ArgumentList.Add("-p:UseSharedCompilation=false");
        }

        start.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        start.Environment.Remove(CudaKernels.DirectoryVariable);

        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start dotnet");
        var output = new StringBuilder();
        process.OutputDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        process.ErrorDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"dotnet {string.Join(' ', arguments)} ran over 5 minutes:\n{output}");
        }

        process.WaitForExit();
        lock (output)
        {
            return (process.ExitCode, output.ToString());
        }
    }
}
