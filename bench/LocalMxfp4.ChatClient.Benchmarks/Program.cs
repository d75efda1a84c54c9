using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Running;
using LocalMxfp4.ChatClient.Benchmarks;

// dotnet run -c Release --project bench/LocalMxfp4.ChatClient.Benchmarks -- trace [REPLIES]   per-token mask cost over whole replies
// dotnet run -c Release --project bench/LocalMxfp4.ChatClient.Benchmarks -- --filter '*'      BenchmarkDotNet, per decoder state
if (args.Length > 0 && args[0] == "trace")
{
    DecodeTrace.Run(args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 20);
    return 0;
}

// Results go under bin/ (ignored by git), not into the directory the command was started from.
BenchmarkSwitcher.FromAssembly(typeof(MaskBenchmarks).Assembly)
    .Run(args, DefaultConfig.Instance.WithArtifactsPath(Path.Combine(AppContext.BaseDirectory, "BenchmarkDotNet.Artifacts")));
return 0;
