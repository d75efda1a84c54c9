using System.CommandLine;
using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Engine.Loading;

namespace LocalMxfp4.Cli;

/// <summary>The <c>--backend</c> and <c>--device</c> options of the commands that run a model, and the load options they make.</summary>
internal sealed class BackendOptions
{
    public Option<EngineBackend> Backend { get; } = new("--backend")
    {
        Description = "auto (CUDA when the GPU, driver and kernels are there and the model is MXFP4, else CPU) | cpu | cuda (fail with the reason when it cannot run).",
        DefaultValueFactory = _ => EngineBackend.Auto,
    };

    public Option<int?> Device { get; } = new("--device") { Description = "CUDA device ordinal (default 0)." };

    public IEnumerable<Option> All => [Backend, Device];

    public EngineLoadOptions Create(ParseResult parse, int threads) =>
        new() { Backend = parse.GetValue(Backend), Device = parse.GetValue(Device), Threads = threads };

    /// <summary>Why an MXFP4 model that could have run on the GPU ran on the CPU (Auto only), for the run's summary line; else null.</summary>
    public static string? FallbackNote(EngineLoadOptions options, IInferenceEngine engine) =>
        options.Backend == EngineBackend.Auto && engine.Description.Backend == "cpu" && engine.Description.WeightFormat == "mxfp4"
            && AcceleratorBackends.LastFallbackReason is string reason
            ? "CUDA not used: " + reason
            : null;
}
