using LocalMxfp4.Engine.Contract;
using LocalMxfp4.Models.Checkpoint;
using LocalMxfp4.Models.Configuration;
using LocalMxfp4.Safetensors;
using LocalMxfp4.Tokenization;

namespace LocalMxfp4.Cli;

/// <summary>Turns the library's typed errors into one readable line and exit code 2, instead of a stack trace.</summary>
internal static class CliErrors
{
    public static int Run(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is ModelConfigException or ModelLoadException or SafetensorsFormatException
            or SafetensorsTensorNotFoundException or SafetensorsDTypeNotSupportedException or TokenizerLoadException
            or ContextOverflowException or ArgumentException or FileNotFoundException or DirectoryNotFoundException
            or IOException or InvalidDataException or NotSupportedException or LocalMxfp4.Cuda.CudaException
            or LocalMxfp4.ChatClient.DuQuantContextOverflowException or LocalMxfp4.Serving.ServingQueueFullException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("cancelled");
            return 130;
        }
    }
}
