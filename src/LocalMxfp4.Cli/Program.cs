using System.CommandLine;
using LocalMxfp4.Cli;

var root = new RootCommand("lmx — LocalMxfp4: run and inspect LLaMA-family models locally (MXFP4 / DuQuant++).")
{
    InfoCommand.Create(),
    GenerateCommand.Create(),
    BenchCommand.Create(),
    QuantizeCommand.Create(),
    EvalCommand.Create(),
    InjectOutliersCommand.Create(),
    ExportGgufCommand.Create(),
};

// Our own handler turns typed errors into one line; the library's default would print a stack trace.
return CliErrors.Run(() => root.Parse(args).Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false }));
