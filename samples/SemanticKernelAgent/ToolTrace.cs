using System.Globalization;
using Microsoft.SemanticKernel;

namespace LocalMxfp4.Samples.SemanticKernelAgent;

/// <summary>Prints every plugin call the kernel runs — the model's automatic calls and /call alike — with its arguments and result.</summary>
public sealed class ToolTrace : IFunctionInvocationFilter
{
    /// <inheritdoc />
    public async Task OnFunctionInvocationAsync(FunctionInvocationContext context, Func<FunctionInvocationContext, Task> next)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(next);
        await next(context);
        string arguments = string.Join(", ", context.Arguments.Select(a => $"{a.Key}: {Quote(a.Value)}"));
        Console.WriteLine($"[tool] {context.Function.PluginName}.{context.Function.Name}({arguments}) -> {context.Result.GetValue<object>()}");
    }

    private static string Quote(object? value) => value switch
    {
        null => "null",
        string s => $"\"{s}\"",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };
}
