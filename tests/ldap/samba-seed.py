# Seeds the Samba test domain of interkom's tests (see README.md):
#   samba-seed.py SMB_CONF SERVICE_PASSWORD
# Works directly on sam.ldb before samba starts, with the calls samba-tool
# makes, in one process. Run with Debian's /usr/bin/python3.
import sys
import ldb
from samba.auth import system_session
from samba.dcerpc.samr import DOMAIN_PASSWORD_COMPLEX
from samba.param import LoadParm
from samba.samdb import SamDB

lp = LoadParm()
lp.load(sys.argv[1])
db = SamDB(url=lp.samdb_url(), session_info=system_session(), lp=lp)

# No complexity, history or minimum age; passwords never expire.
m = ldb.Message(ldb.Dn(db, db.domain_dn()))
props = int(db.get_pwdProperties()) & ~DOMAIN_PASSWORD_COMPLEX
for attr, value in (("pwdProperties", props), ("pwdHistoryLength", 0),
                    ("minPwdAge", 0), ("maxPwdAge", -0x8000000000000000)):
    m[attr] = ldb.MessageElement(str(value), ldb.FLAG_MOD_REPLACE, attr)
db.modify(m)

def user(name, given, surname):
    # CN is the full name, as samba-tool and AD make it: "CN=Maria Müller"
    db.newuser(name, "Sommer-2026!x", givenname=given, surname=surname,
               mailaddress=name + "@hitzacker.example", useusernameascn=None)

user("m.mueller", "Maria", "Müller")
user("k.schulz", "Karl", "Schulz")
user("p.alt", "Paul", "Alt")
db.newuser("interkom-dienst", sys.argv[2], description="interkom service account")

db.disable_account("(sAMAccountName=k.schulz)")
# accountExpires in 2009 (Windows FILETIME)
res = db.search(db.domain_dn(), expression="(sAMAccountName=p.alt)", attrs=[])
m = ldb.Message(res[0].dn)
m["accountExpires"] = ldb.MessageElement("129000000000000000", ldb.FLAG_MOD_REPLACE,
                                         "accountExpires")
db.modify(m)

for group, members in (("meldeamt", ["m.mueller"]),
                       ("buergerservice", ["meldeamt"]),
                       ("rathaus", ["buergerservice"])):
    db.newgroup(group)
    db.add_remove_group_members(group, members, add_members_operation=True)
