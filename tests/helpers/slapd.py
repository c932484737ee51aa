"""A throwaway OpenLDAP server for tests: Debian's `slapd` in the foreground on
a free port, with a generated slapd.conf and an mdb database in a temporary
directory, loaded with `ldapadd` (ldap-utils).

`Slapd(folder, schemas).start()`; `add(ldif)`; `stop()` ends the process (the
database stays, so `start()` brings the same directory back on the same port).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers.servers import find_program, free_port, wait_for_port

SUFFIX = "dc=emqx,dc=io"
ROOT_DN = f"cn=root,{SUFFIX}"
ROOT_PASSWORD = "slapd-root-secret-4711"
SYSTEM_SCHEMAS = ("/etc/ldap/schema/core.schema", "/etc/ldap/schema/cosine.schema")


class Slapd:
    def __init__(self, folder: Path, schemas: list[Path]) -> None:
        self.slapd = find_program("slapd", "/usr/sbin")
        self.ldapadd = find_program("ldapadd")
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        (folder / "db").mkdir(parents=True, exist_ok=True)
        includes = "\n".join(f"include {path}" for path in [*SYSTEM_SCHEMAS, *schemas])
        module_dirs = [d for d in ("/usr/lib/ldap", "/usr/lib/openldap") if Path(d).is_dir()]
        modules = f"modulepath {module_dirs[0]}\nmoduleload back_mdb\n" if module_dirs else ""
        self.conf = folder / "slapd.conf"
        self.conf.write_text(f"""{includes}
pidfile {folder}/slapd.pid
{modules}
database mdb
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {folder}/db
maxsize 10485760
""")

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}/"

    def start(self) -> Slapd:
        log = open(self.folder / "slapd.log", "ab")  # noqa: SIM115 (kept by the process)
        try:
            self.proc = subprocess.Popen(
                [self.slapd, "-d", "0", "-f", str(self.conf), "-h", self.url],
                stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        try:
            wait_for_port(self.port, timeout=30)
        except TimeoutError:
            self.stop()
            raise RuntimeError("slapd did not start: "
                               + (self.folder / "slapd.log").read_text()[-2000:]) from None
        return self

    def add(self, ldif: str) -> None:
        done = subprocess.run(
            [self.ldapadd, "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PASSWORD],
            input=ldif.encode(), capture_output=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"ldapadd failed ({done.returncode}): "
                               f"{done.stderr.decode(errors='replace')}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
